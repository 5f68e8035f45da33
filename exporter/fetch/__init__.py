"""Fetchers: load a URL through one pinned lane and report what came back.

Every fetcher kind (plain HTTP, Chromium, Tor Browser, Firefox) has the same
signature, like blackbox_exporter's probers::

    fetcher.fetch(url, lane, timeout) -> FetchResult   # or raises FetchError
"""
