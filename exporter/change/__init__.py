"""Page-change detection: is the page an exit delivers the page the site serves?

A baseline is learnt per target and fetcher from direct fetches (no tor);
each probed page is compared with it (``compare``), which answers one of a
fixed set of kinds: None (unchanged), ``injected``, ``rewritten`` or
``different``.  Responses are also checked for onion-service announcements
(``onion_facts``).
"""

from exporter.change.baseline import Baseline
from exporter.change.compare import DEFAULT_THRESHOLD, KINDS, Change, compare
from exporter.change.onion import onion_facts

__all__ = ["DEFAULT_THRESHOLD", "KINDS", "Baseline", "Change", "compare", "onion_facts"]
