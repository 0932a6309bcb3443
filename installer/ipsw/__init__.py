"""Restore images (IPSW/OTA): read the directory remotely, fetch only the needed members.

Public API (import from the submodules; nothing is re-exported here):

- ``remote.open_archive(source, session) -> Archive``: the checked central directory of an
  IPSW/OTA zip at an http(s) URL or a local path (ZIP64 included; hostile layouts refused).
  ``remote.resolve_source(url, ipsw_base)`` applies an ``IPSW_BASE`` mirror.
- ``fetch.fetch_members(archive, names, sink, session=, cache_root=, options=, progress=,
  trace=) -> FetchResult``: parallel, validated, resumable ranged fetch; each member is CRC-checked
  and then handed to ``sink`` (``member.DirectorySink(out_dir)`` writes files atomically,
  ``member.MemorySink()`` keeps small ones). ``progress`` receives ``FetchProgress``
  (bytes done/total, speed, ETA, per-member state).
- ``ranges``: pure span arithmetic (``coalesce`` neighbours, ``subtract`` cached ranges);
  ``schedule.WorkQueue``: one shared queue of requests, sized to shrink as it drains
  (guided), with in-flight stealing for a stalled connection. ``cache``: the range cache
  (fetched blocks only, flock-guarded, shared by install and ``pippin ipsw``);
  ``suspects``: which bytes of a member that failed its CRC to fetch again.
- ``manifest``: BuildManifest identity selection and the member lists an install needs
  (``stub_members``, ``firmware_members``).
- ``ota``: OTA prefixes and BXDIFF50/PBZX BaseSystem decoding; ``images``: the pinned
  restore-image table with minimum versions and chip minimums.
- ``image4.read_im4p(data)``: IM4P type, description and decompressed payload (vendorfw's
  decoder, errors as ``RestoreImageError``).
- ``cli``: ``pippin ipsw ls|identities|fetch|needed`` (``--json`` on each).

Errors are ``installer.errors.NetworkError`` (HTTP, after retries) and
``RestoreImageError`` (bad zip, bad member, CRC mismatch, missing identity), one line each.
"""
