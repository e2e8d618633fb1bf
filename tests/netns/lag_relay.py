#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
# lag_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_FILE
#
# A TCP relay that holds every chunk, both ways, for the delay (milliseconds) written in
# DELAY_FILE, re-read for each chunk: a test moves latency from one proxy to another by
# rewriting two files. It stands in for `tc qdisc ... netem delay`, which kernels built without
# CONFIG_NET_SCH_NETEM (the test VMs') do not have; a delay per chunk also keeps the order of
# bytes, as netem on one path does.
import asyncio
import sys


def delay_s(path):
    try:
        with open(path) as f:
            return max(0.0, float(f.read().strip() or 0)) / 1000.0
    except (OSError, ValueError):
        return 0.0


async def pipe(r, w, path):
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            d = delay_s(path)
            if d:
                await asyncio.sleep(d)
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            w.close()
        except OSError:
            pass


async def serve(lh, lp, th, tp, path):
    async def client(cr, cw):
        try:
            sr, sw = await asyncio.open_connection(th, tp)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, sw, path), pipe(sr, cw, path))

    srv = await asyncio.start_server(client, lh, lp, reuse_address=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit("usage: lag_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_FILE")
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]))
