"""A stock Open Inference Protocol v2 client against ``edgedistill serve``: NVIDIA's ``tritonclient`` over HTTP, with
its defaults (the input and outputs in the binary tensor data extension), then in plain JSON.

    .venv-tritonclient/bin/python benchmarks/peers/tritonclient_check.py PORT MODEL < texts.json

Reads a JSON list of texts on stdin; prints ``{"binary": [labels], "json": [labels], "ready": bool}``. Run by
``benchmarks/serve.py --tritonclient-python``, which compares the labels with ``TextClassifier.predict``. Its own
environment (``python -m venv .venv-tritonclient && .venv-tritonclient/bin/pip install 'tritonclient[http]'``):
tritonclient pulls in gevent, which the project's environment does not need.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient


def labels(client, model: str, texts: list[str], binary: bool) -> list[str]:
    out = []
    for start in range(0, len(texts), 64):
        part = np.array([t.encode("utf-8") for t in texts[start:start + 64]], dtype=object).reshape(-1, 1)
        inp = httpclient.InferInput("text", list(part.shape), "BYTES")
        inp.set_data_from_numpy(part, binary_data=binary)
        result = client.infer(model, [inp], outputs=[httpclient.InferRequestedOutput("label", binary_data=binary)])
        out += [v.decode("utf-8") if isinstance(v, bytes) else v for v in result.as_numpy("label").reshape(-1)]
    return out


def main() -> None:
    port, model = sys.argv[1], sys.argv[2]
    texts = json.load(sys.stdin)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    print(json.dumps({"ready": client.is_server_ready() and client.is_model_ready(model),
                      "binary": labels(client, model, texts, True), "json": labels(client, model, texts, False)}))


if __name__ == "__main__":
    main()
