"""Profiles the profile stage decoded or wrote lately, by profile id, so that a profile's
next event skips decoding its JSON (the profile stage's largest cost per event after
the write: about 15% of a worker's CPU on the single layout, in bench-stream).

An entry is trusted only for the very bytes it was made from: the stored value is
compared (a memcmp) before its profile is returned, so whatever wrote the store
meanwhile (a merge, a restore, another worker before a takeover), a stale entry is
never used. Profiles are changed by copy (streams/core/profile.py: ``replaced``,
``insert_timeline``), never in place, so one may be shared with the caller.

Bounded by the stored bytes of its entries (a decoded profile takes a few times more
memory than its JSON): ``ACTIVATION_PROFILE_CACHE_BYTES``; 0 turns it off. One per
profile stage (a worker's), made by whoever makes the stage: nothing at import.
"""

from __future__ import annotations

from streams.core.profile import Profile


class DecodedProfiles:
    """Profile id -> (stored bytes, their profile), least recently used first."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.held = 0  # stored bytes of the entries
        self._entries: dict[str, tuple[bytes, Profile]] = {}
        self.hits = self.misses = 0

    def read(self, profile_id: str, raw: bytes) -> Profile:
        """The profile stored as ``raw``: the kept one if it was made from these bytes."""
        entry = self._entries.get(profile_id)
        if entry is not None and entry[0] == raw:
            self.hits += 1
            self._entries[profile_id] = self._entries.pop(profile_id)  # now the newest
            return entry[1]
        self.misses += 1
        profile = Profile.from_json(raw)
        self.remember(profile_id, raw, profile)
        return profile

    def remember(self, profile_id: str, raw: bytes, profile: Profile) -> None:
        """``raw`` is what ``profile`` is stored as (just written, or read)."""
        if self.budget <= 0:
            return
        old = self._entries.pop(profile_id, None)  # re-inserted last: the newest
        if old is not None:
            self.held -= len(old[0])
        if len(raw) > self.budget:
            return
        self._entries[profile_id] = (raw, profile)
        self.held += len(raw)
        while self.held > self.budget:
            oldest = next(iter(self._entries))
            self.held -= len(self._entries.pop(oldest)[0])

    def __len__(self) -> int:
        return len(self._entries)

