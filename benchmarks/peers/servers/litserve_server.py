"""LitServe serving the identity function: POST /predict {"data": record or [records]}.

Usage: python litserve_server.py PORT
"""

from __future__ import annotations

import sys

import litserve as ls


def pre_processing(data):
    return data


class Identity(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return request["data"]

    def predict(self, data):
        if isinstance(data, list):
            return [pre_processing(record) for record in data]
        return pre_processing(data)

    def encode_response(self, output):
        return {"result": output}


if __name__ == "__main__":
    server = ls.LitServer(Identity(), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", generate_client_file=False)
