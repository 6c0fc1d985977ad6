"""``python -m examples.fastapi_chat [--host 127.0.0.1] [--port 8000]``: serve the chat."""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(description="the FastAPI chat with the gateway inside")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run("examples.fastapi_chat.app:app", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
