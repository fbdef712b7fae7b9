"""A music-streaming app's event log, in the shape of Udacity's Sparkify data, for
examples/events/mapping.toml: the only export, from which the customers, their signup and
their cancellation all come.

events.json (JSON lines, one page view each): ts (unix milliseconds), userId (text, "" for
logged-out views), sessionId, page ("NextSong", "Thumbs Up", "Thumbs Down", "Roll Advert",
"Add Friend", "Upgrade", "Downgrade", "Cancel", "Cancellation Confirmation", ...), auth, level
(free or paid), registration (unix milliseconds; null when logged out), gender, location.
A listener who is about to cancel listens less, skips more songs with a thumbs down and, on
the free level, sees more adverts; "Cancellation Confirmation" is their last event.

Run: ``uv run python examples/events/generate.py --out examples/events/sample``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2018-06-01")
END = pd.Timestamp("2018-12-01")
LOCATIONS = ["Berlin", "Hamburg", "Munich", "Cologne", "Vienna", "Zurich"]
PAGES = ["NextSong"] * 40 + ["Home"] * 3 + ["Add to Playlist", "Add Friend", "Logout"]


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def write_sample(out: str | Path, users: int = 1000, seed: int = 0) -> int:
    """Write events.json into out; returns its number of lines."""
    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    for u in range(users):
        user = str(100 + u) if u % 4 else f"{u:06d}"  # some ids with leading zeros
        registered = START - pd.Timedelta(days=float(rng.exponential(200)))
        level = "paid" if rng.random() < 0.5 else "free"
        appetite = rng.gamma(3.0, 1.0)  # sessions per week when content
        mood = 0.0  # how close the listener is to leaving: 0 content, 1 gone
        t = START + pd.Timedelta(hours=float(rng.uniform(0, 72)))
        location = LOCATIONS[rng.integers(len(LOCATIONS))]
        drift = rng.exponential(0.02) * (1.5 if level == "free" else 1.0)  # some never tire
        while True:
            rate = appetite * (1 - 0.8 * mood)
            t += pd.Timedelta(days=float(rng.exponential(7 / max(rate, 0.05))))
            if t >= END:
                break
            mood = min(1.0, mood + rng.exponential(drift))
            if rng.random() < 0.5 * mood**3:
                rows.append((user, t, "Cancel", level, registered, location))
                rows.append(
                    (user, t + pd.Timedelta(seconds=30), "Cancellation Confirmation", level,
                     registered, location)
                )  # fmt: skip
                break
            songs = rng.poisson(8 * (1 - 0.5 * mood)) + 1
            for k in range(songs):
                at = t + pd.Timedelta(minutes=4 * k)
                if at >= END:
                    break
                page = PAGES[rng.integers(len(PAGES))]
                if rng.random() < 0.02 + 0.25 * mood:
                    page = "Thumbs Down"
                elif rng.random() < 0.08 * (1 - mood):
                    page = "Thumbs Up"
                elif level == "free" and rng.random() < 0.05 + 0.1 * mood:
                    page = "Roll Advert"
                rows.append((user, at, page, level, registered, location))
            if level == "free" and rng.random() < 0.05 * (1 - mood):
                rows.append((user, t, "Upgrade", level, registered, location))
                level = "paid"
    for _ in range(users // 2):  # logged-out visits: no user
        rows.append(("", START + pd.Timedelta(hours=float(rng.uniform(0, 4000))), "Home",
                     "free", None, ""))  # fmt: skip
    rows.sort(key=lambda r: r[1])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "events.json").open("w") as fh:
        for session, (user, at, page, level, registered, location) in enumerate(rows):
            record = {
                "ts": _ms(at),
                "userId": user,
                "sessionId": session // 20,
                "page": page,
                "auth": "Logged In" if user else "Logged Out",
                "level": level,
                "registration": None if registered is None else _ms(registered),
                "gender": None if not user else ("F" if int(user) % 2 else "M"),
                "location": location or None,
            }
            fh.write(json.dumps(record) + "\n")
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sample"))
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"events: {write_sample(args.out, args.users, args.seed):,} lines")


if __name__ == "__main__":
    main()
