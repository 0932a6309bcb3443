"""Boot objects: stage-1 configuration, stage-2 ``boot.bin`` assembly, signatures, versions
and the atomic ESP update (formats.md §2-§5)."""
