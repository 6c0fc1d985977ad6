"""Take ``docs/demo.png``: the demo at ``/`` with three peers chatting across replicas.

It starts ``gateway cluster --replicas 3`` (redis-server, three replicas, nginx: the
development topology), opens the demo in headless Chromium (Debian's ``/usr/bin/chromium``
through Playwright) as alice, bob and carol, each on a replica of their own, lets them
talk in ``demo:lobby`` (with the plain channel ``chat`` in the room list), and saves what
alice sees. Rerun it after changing the page, from the repository root:

    .venv/bin/python scripts/demo_screenshot.py [--out docs/demo.png]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.browser import chromium  # noqa: E402
from tests.support.cluster import ClusterProcess  # noqa: E402
from tests.support.demo import chat_of_three  # noqa: E402

ROOM = "demo:lobby"


async def take(out: Path, cluster: ClusterProcess) -> None:
    replicas = sorted(cluster.replica_names())
    base_urls = [f"http://127.0.0.1:{cluster.children[name].port}" for name in replicas]
    async with chromium() as browser:
        alice, _, _ = await chat_of_three(browser, base_urls, ROOM, also=("chat",))
        await alice.locator("#text").blur()
        await alice.set_viewport_size({"width": 1180, "height": 600})
        await alice.screenshot(path=str(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "demo.png")
    args = parser.parse_args()
    cluster = ClusterProcess(replicas=3)
    try:
        cluster.start()
        asyncio.run(take(args.out, cluster))
    finally:
        cluster.kill()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
