"""secret.nonce-reuse: the same IV in two or more ciphertexts under one key.

Every decrypted value leaves a compact trace — its IV (16 bytes; a 12-byte IV is padded and
flagged, so 12- and 16-byte IVs never compare equal), the key that opened it and where it
lives — 28 bytes per value in three flat buffers, so millions of values fit in tens of MB
and worker processes can hand theirs to the parent as plain bytes. The parent merges them,
sorts (numpy when available) and reports each value whose exact IV and key occur more than
once. With filters, only the values read are compared (documented in the README).

Measured cost: ~0.1 µs per value to trace, ~0.2 s and ~40 MB to compare two million.
"""

from __future__ import annotations

from array import array

from ..codes import SECRET_NONCE_REUSE

_SHORT_IV = 1 << 23  # meta flag: the IV was 12 bytes
_SLOT_MASK = _SHORT_IV - 1
_PAD = b"\0\0\0\0"
MAX_SHOWN = 5  # other locations a message names


class IVLog:
    """The IV traces of one process. `slot` numbers an (app_id, field) pair (see row_auditor.py)."""

    __slots__ = ("ivs", "meta", "rows")

    def __init__(self, ivs=b"", meta=b"", rows=b""):
        self.ivs = bytearray(ivs)
        self.meta = array("I")  # uint32: key_index << 24 | short-IV flag | slot
        self.meta.frombytes(meta)
        self.rows = array("q")  # installation_id << 32 | user_id
        self.rows.frombytes(rows)

    def add(self, iv: bytes, key_index: int, slot: int, installation_id: int, user_id: int) -> None:
        self.adder()(iv, key_index, slot, installation_id << 32 | user_id)

    def adder(self):
        """A fast `add(iv, key_index, slot, row)` for the hot loop; `row` = id << 32 | user_id.

        The layout is this: `ivs` += 16 IV bytes (12-byte IVs padded, flagged in meta),
        `meta` += key_index << 24 | flag | slot, `rows` += row. row_auditor.py inlines the 16-byte
        case of it (three C calls instead of a Python one, per value)."""
        ivs, meta_append, rows_append = self.ivs, self.meta.append, self.rows.append

        def add(iv, key_index, slot, row):
            if len(iv) == 12:
                ivs.extend(iv)
                ivs.extend(_PAD)
                slot |= _SHORT_IV
            else:
                ivs.extend(iv)
            meta_append(key_index << 24 | slot)
            rows_append(row)

        return add

    def __len__(self) -> int:
        return len(self.meta)

    def state(self) -> tuple[bytes, bytes, bytes]:
        """Plain bytes, cheap to pickle to the parent process."""
        return bytes(self.ivs), self.meta.tobytes(), self.rows.tobytes()

    def buffers(self) -> tuple[memoryview, memoryview, memoryview]:
        """The same three columns as `state()`, as views without a copy (for writing them)."""
        return memoryview(self.ivs), memoryview(self.meta).cast("B"), memoryview(self.rows).cast("B")

    def extend(self, state) -> None:
        ivs, meta, rows = state
        self.ivs += ivs
        self.meta.frombytes(meta)
        self.rows.frombytes(rows)

    def reused(self) -> list[list[int]]:
        """Groups (lists of positions) of values sharing one exact IV under one key."""
        if len(self) < 2:
            return []
        try:
            import numpy
        except ImportError:  # numpy is optional for the core: a dict does for small databases
            return self._reused_pure()
        return self._reused_numpy(numpy)

    def _reused_numpy(self, np) -> list[list[int]]:
        # One 64-bit digest per value (IV halves mixed, key and IV length folded in), sorted to
        # find candidates in ~2 x 8 bytes per value; candidates are then grouped exactly.
        words = np.frombuffer(self.ivs, dtype="<u8").reshape(-1, 2)
        digest = words[:, 1].copy()
        digest *= np.uint64(0x9E3779B97F4A7C15)
        digest ^= words[:, 0]
        digest ^= np.frombuffer(self.meta, dtype=np.uint32) >> 23
        ordered = np.sort(digest)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if not len(repeated):
            return []
        # Binary search in the (sorted, few) repeated digests: np.isin would sort all of them.
        repeated = sorted_unique(repeated)
        positions = np.minimum(np.searchsorted(repeated, digest), len(repeated) - 1)
        candidates = np.flatnonzero(repeated[positions] == digest).tolist()
        return self._exact_groups(candidates)

    def _reused_pure(self) -> list[list[int]]:
        return self._exact_groups(range(len(self.meta)))

    def _exact_groups(self, positions) -> list[list[int]]:
        """Group positions by exact (IV, IV length, key): the groups of two or more."""
        seen: dict[bytes, list[int]] = {}
        ivs, meta = self.ivs, self.meta
        for position in positions:
            identity = bytes(ivs[position * 16:position * 16 + 16]) + (meta[position] >> 23).to_bytes(2, "big")
            seen.setdefault(identity, []).append(position)
        return [group for group in seen.values() if len(group) > 1]

    def location(self, position: int) -> tuple[int, int, int, int]:
        """(installation_id, user_id, slot, key_index) of one traced value."""
        row, meta = self.rows[position], self.meta[position]
        return row >> 32, row & 0xFFFFFFFF, meta & _SLOT_MASK, meta >> 24


def sorted_unique(values):
    """numpy.unique of a 1-d array (sorted, each value once), without it: numpy.unique imports
    numpy.ma on first use, ~10 ms of the start of every run that needs it."""
    import numpy as np

    values = np.sort(values)
    if len(values) < 2:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def nonce_reuse_findings(log: IVLog, slots, groups=None) -> list[tuple]:
    """One (code, installation_id, user_id, app_id, field, message) per value whose IV is reused.

    `slots[slot]` is the (app_id, field) pair a trace's slot numbers; `groups` are
    `log.reused()` when the caller has them already."""
    from ..crypto._keys import key_variable

    found = []
    for group in log.reused() if groups is None else groups:
        # In place order, not trace order (which follows the workers' chunks and the table's
        # physical order): the same data gives the same messages, run after run.
        places = sorted(log.location(position) for position in group)
        for installation_id, user_id, slot, key_index in places:
            app_id, field = slots[slot]
            others = [
                f"installation {other_id} {slots[other_slot][1]}"
                for other_id, _, other_slot, _ in places
                if (other_id, other_slot) != (installation_id, slot)
            ]
            shown = ", ".join(others[:MAX_SHOWN]) + (f" and {len(others) - MAX_SHOWN} more" if len(others) > MAX_SHOWN else "")
            count = len(places) - 1
            found.append((
                SECRET_NONCE_REUSE, installation_id, user_id, app_id, field,
                f"its IV is used by {count} other ciphertext{'s' if count != 1 else ''} under "
                f"{key_variable(key_index)} ({shown})",
            ))
    return found
