"""The command line: light imports, tables, one-line errors."""

from __future__ import annotations

import logging
import subprocess
import sys

from typer.testing import CliRunner

from edgedistill.compress.cli import app

runner = CliRunner()


def test_help_does_not_import_torch_or_transformers():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom edgedistill.compress.cli import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "heavy = [m for m in ('torch', 'transformers', 'optimum', 'datasets', 'sklearn') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runtime_import_is_torch_free():
    subprocess.run([sys.executable, "-c", "import edgedistill.runtime, sys; assert 'torch' not in sys.modules"],
                   check=True)


def test_the_runtime_alone_imports_no_command_line_library_and_the_command_says_what_to_install():
    """The base install is onnxruntime, tokenizers and numpy: the runtime imports nothing else, and the
    ``edgedistill`` command without typer / rich names the extra instead of a traceback."""
    code = ("import sys\nfrom edgedistill import TextClassifier\nimport edgedistill.runtime.classifier\n"
            "extra = [m for m in ('typer', 'rich', 'click', 'torch', 'pyarrow') if m in sys.modules]\n"
            "assert not extra, extra\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    missing = "import sys\nsys.modules['typer'] = None\nfrom edgedistill.__main__ import main\nsys.exit(main())\n"
    r = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True)
    assert r.returncode == 1 and "pip install 'edgedistill[cli]'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "edgedistill", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "predict" in r.stdout


def test_sources_list_shows_every_builtin_uncached():
    r = runner.invoke(app, ["sources", "list"])
    assert r.exit_code == 0, r.output
    for name in ("mpnet-base", "minilm-l6", "movie-snippets", "trec50", "snippets-unlabelled"):
        assert name in r.output
    assert "yes" not in r.output  # the test cache is empty


def test_data_show_prints_counts_per_split_and_label(tiny_csv):
    r = runner.invoke(app, ["data", "show", str(tiny_csv), "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "negative" in r.output and "positive" in r.output
    # 240 rows: 168 train, 24 validation, 48 test
    assert "168" in r.output and "48" in r.output and "240" in r.output


def test_bad_input_is_one_line_and_exit_code_1(tmp_path):
    r = runner.invoke(app, ["data", "show", str(tmp_path / "nope.csv")])
    assert r.exit_code == 1
    assert "error:" in r.output and "no such file" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["data", "show", "movie-snipets"])
    assert r.exit_code == 1 and "neither a built-in dataset" in r.output


def test_debug_flag_shows_the_traceback(tmp_path):
    r = runner.invoke(app, ["--debug", "data", "show", str(tmp_path / "nope.csv")])
    assert r.exit_code == 1
    from edgedistill.compress.errors import DataError
    assert isinstance(r.exception, DataError)


def test_log_to_file_keeps_the_libraries_off_the_console_and_puts_everything_back(tmp_path, capfd):
    import warnings

    import datasets
    import transformers.utils.logging as hf_logging

    from edgedistill.compress.cli._logs import log_to_file

    def state():
        loggers = [logging.getLogger(n) for n in ("", "edgedistill.compress", "transformers", "datasets")]
        return ([(lg.handlers, list(lg.handlers), lg.level, lg.propagate) for lg in loggers], warnings.showwarning,
                hf_logging.is_progress_bar_enabled(), datasets.are_progress_bars_disabled())

    before = state()
    path = tmp_path / "build" / "build.log"
    with log_to_file(path):
        assert not hf_logging.is_progress_bar_enabled() and datasets.are_progress_bars_disabled()
        logging.getLogger("edgedistill.compress.somewhere").debug("our own record")
        hf_logging.get_logger("transformers.somewhere").warning("a transformers notice")
        logging.getLogger("datasets.somewhere").warning("a datasets notice")
        logging.getLogger("onnxruntime.quantization").warning("a notice to the root logger")
        warnings.warn("a library's warning", FutureWarning, stacklevel=1)
    assert capfd.readouterr() == ("", "")
    text = path.read_text()
    for line in ("DEBUG    edgedistill.compress.somewhere: our own record",
                 "transformers.somewhere: a transformers notice",
                 "datasets.somewhere: a datasets notice", "onnxruntime.quantization: a notice to the root logger",
                 "FutureWarning: a library's warning"):
        assert line in text
    assert state() == before
    with log_to_file(path):  # a second run appends
        logging.getLogger("edgedistill.compress.somewhere").info("second run")
    assert path.read_text().startswith(text) and "second run" in path.read_text()
