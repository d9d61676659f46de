#!/usr/bin/env python3
"""Writes benches/data/log_lines.txt: a deterministic sample of realistic log lines (one event
per line) for measuring compression ratios: nginx access logs, syslog lines and JSON
application logs, interleaved as an agent collecting from several sources would see them.

Run: python3 benches/data/make_corpus.py  (about 300 KB; the output is committed)."""
import json
import random
from pathlib import Path

rng = random.Random(20261124)
HOSTS = [f"web-{i:02d}.prod.example.net" for i in range(1, 9)]
PATHS = ["/", "/index.html", "/api/v1/orders", "/api/v1/orders/{id}", "/api/v1/users/{id}",
         "/static/app.{h}.js", "/static/style.{h}.css", "/healthz", "/login", "/search?q={q}",
         "/api/v2/cart/{id}/items", "/images/products/{id}.jpg"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
          "curl/8.5.0", "kube-probe/1.29", "Go-http-client/1.1",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"]
WORDS = ["shoes", "red+dress", "laptop", "coffee", "garden+chair", "usb-c+cable", "book"]
SERVICES = ["orders", "payments", "inventory", "auth", "search"]
LEVELS = ["INFO"] * 12 + ["DEBUG"] * 4 + ["WARN"] * 2 + ["ERROR"]
DAEMONS = ["sshd", "systemd", "kernel", "cron", "dockerd", "kubelet"]


def ip():
    return f"{rng.choice([10, 172, 192])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ts(i):
    s = 36000 + i // 7
    return f"24/Nov/2026:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d} +0000"


def path():
    return rng.choice(PATHS).format(id=rng.randint(1000, 999999), h=f"{rng.getrandbits(32):08x}",
                                    q=rng.choice(WORDS))


def nginx(i):
    status = rng.choices([200, 304, 404, 500, 301], [80, 8, 6, 2, 4])[0]
    return (f'{ip()} - - [{ts(i)}] "{rng.choice(["GET"] * 5 + ["POST", "PUT"])} {path()} HTTP/1.1" '
            f'{status} {rng.randint(0, 48000)} "https://shop.example.net{path()}" "{rng.choice(AGENTS)}" '
            f'rt={rng.random() * 0.8:.3f} upstream={rng.randint(1, 4)}')


def syslog(i):
    s = 36000 + i // 7
    d = rng.choice(DAEMONS)
    msg = {
        "sshd": f"Accepted publickey for deploy from {ip()} port {rng.randint(30000, 65000)} ssh2: ED25519 SHA256:{rng.getrandbits(128):032x}",
        "systemd": f"Started Session {rng.randint(1, 9999)} of User deploy.",
        "kernel": f"[{rng.random() * 1e6:.6f}] TCP: request_sock_TCP: Possible SYN flooding on port {rng.choice([80, 443])}. Sending cookies.",
        "cron": f"(root) CMD (/usr/local/bin/rotate-logs --keep {rng.randint(3, 14)} >/dev/null 2>&1)",
        "dockerd": f'time="2026-11-24T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" level=info msg="ignoring event" container={rng.getrandbits(256):064x} module=libcontainerd',
        "kubelet": f'I1124 {s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{rng.randint(0, 999999):06d} 1234 kubelet.go:2412] "SyncLoop (PLEG): event for pod" pod="prod/orders-{rng.getrandbits(24):06x}"',
    }[d]
    return f"Nov 24 {s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d} {rng.choice(HOSTS)} {d}[{rng.randint(100, 40000)}]: {msg}"


def app(i):
    s = 36000 + i // 7
    svc = rng.choice(SERVICES)
    rec = {
        "ts": f"2026-11-24T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{rng.randint(0, 999):03d}Z",
        "level": rng.choice(LEVELS),
        "service": svc,
        "host": rng.choice(HOSTS),
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
        "msg": rng.choice(["request completed", "cache miss", "payment authorized", "retrying upstream call",
                           "user logged in", "order created", "stock reserved", "slow query"]),
        "user_id": rng.randint(1, 500000),
        "duration_ms": round(rng.random() * 250, 2),
    }
    if rec["level"] == "ERROR":
        rec["error"] = "upstream timed out after 5000ms (connect to inventory.svc.cluster.local:8080)"
    return json.dumps(rec, separators=(",", ":"))


lines = []
i = 0
while sum(len(line) + 1 for line in lines) < 300_000:
    lines.append(rng.choices([nginx, syslog, app], [5, 2, 3])[0](i))
    i += 1
out = Path(__file__).with_name("log_lines.txt")
out.write_text("\n".join(lines) + "\n")
print(f"{out}: {len(lines)} lines, {out.stat().st_size} bytes")
