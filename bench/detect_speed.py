"""How fast the detector classifies a large page (a benchmark, not a test).

    python bench/detect_speed.py [--kb 200] [--seconds 3]

Two synthetic pages of the given size: a typical one (a normal page behind
Cloudflare with its sensor scripts) and a worst case that holds every
prefilter literal of the shipped signatures in every place a rule searches
(script code, visible text, a frame's URL), so every regex runs.
Times are this process's CPU time, so other work on the machine does not
inflate them.
"""

from __future__ import annotations

import argparse
import time

from exporter.detect import classify, load_signatures
from exporter.values import Response

HEADERS = (("Server", "cloudflare"), ("CF-RAY", "8f1a2b3c4d5e6f70-FRA"),
           ("Set-Cookie", "__cf_bm=abc; path=/"), ("Content-Type", "text/html; charset=utf-8"))
HEAD = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Example News</title>'
        '<script src="/cdn-cgi/challenge-platform/scripts/jsd/main.js" defer></script>'
        '<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/normalize/8.0.1/normalize.min.css">'
        '</head><body>')
ARTICLE = ('<article class="story"><h2><a href="/2026/11/{n}/city-council">City council story {n}</a></h2>'
           '<p>The vote passed after a long debate about bike lanes, parking and bus routes; '
           'residents asked for a reference to the plan, and the council promised to publish it.</p>'
           '<script>window.dataLayer=window.dataLayer||[];dataLayer.push({{"event":"view","id":{n}}});</script>'
           '</article>\n')


def page(kilobytes: int, worst_case: bool) -> str:
    filler = []
    if worst_case:
        signatures = load_signatures().items
        literals = sorted({text for s in signatures for rule in s.all + s.any + s.none
                           for group in rule.literals or () for text in group})
        filler.append("<script>" + "\n".join(literals) + "</script><p>" + " ".join(literals) + "</p>"
                      + '<iframe src="/' + "/".join(literals).replace('"', "") + '"></iframe>')
    n = 0
    while len(HEAD) + sum(map(len, filler)) < kilobytes * 1024:
        filler.append(ARTICLE.format(n=n))
        n += 1
    return HEAD + "".join(filler) + "</body></html>"


def measure(body: str, seconds: float) -> tuple[int, float]:
    response = Response("https://news.example/", 200, HEADERS, body)
    classify(response)  # load and compile the signatures outside the timing
    count, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        classify(response)
        count += 1
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    for name, worst in (("typical", False), ("worst case", True)):
        body = page(args.kb, worst)
        count, elapsed = measure(body, args.seconds)
        per_page = elapsed / count
        size_kb = len(body.encode()) / 1024
        print(f"{name:>10}: {size_kb:.0f} KB page, {count / elapsed:.1f} pages/s, "
              f"{per_page * 1000:.2f} ms/page, {per_page * 1000 / size_kb:.4f} ms/KB")


if __name__ == "__main__":
    main()
