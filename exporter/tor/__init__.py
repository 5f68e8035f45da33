"""Everything that talks to tor: launching or connecting, the consensus, pinned circuits."""
