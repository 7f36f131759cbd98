"""A closed-loop websocket load generator: N sockets, each with one request in flight, for a
fixed time. Prints one JSON line like the wrk script's. Run as its own process."""

import argparse
import asyncio
import json
import time

import numpy as np
import websockets


async def client(url: str, token: str, body: str, deadline: float, latencies: list[float],
                 errors: list[int]) -> None:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                  max_size=2**26) as socket:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await socket.send(body)
            reply = await socket.recv()
            latencies.append(time.perf_counter() - started)
            if '"error"' in reply[:200]:
                errors.append(1)


async def main(url: str, token: str, body: str, clients: int, seconds: float) -> None:
    latencies: list[float] = []
    errors: list[int] = []
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(client(url, token, body, deadline, latencies, errors) for _ in range(clients)))
    elapsed = time.monotonic() - started
    lat = np.array(latencies or [0.0]) * 1e6
    print("BENCH_RESULT " + json.dumps({
        "requests": len(latencies), "duration_us": int(elapsed * 1e6),
        "p50_us": int(np.percentile(lat, 50)), "p95_us": int(np.percentile(lat, 95)),
        "p99_us": int(np.percentile(lat, 99)), "errors": len(errors), "non_2xx": len(errors), "timeouts": 0,
    }), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--body", required=True, help="file with one JSON request")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    with open(args.body) as handle:
        asyncio.run(main(args.url, args.token, handle.read(), args.clients, args.seconds))
