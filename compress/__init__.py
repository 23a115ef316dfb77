"""edgedistill's toolchain: fine-tune a teacher, distil a student, export, quantize, package.

Importing this package is cheap: torch and transformers are imported inside the
functions that need them, so the CLI's ``--help`` and the light commands stay fast.
"""
