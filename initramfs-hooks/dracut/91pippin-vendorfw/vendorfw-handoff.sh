#!/bin/sh
# dracut cleanup hook (sourced; the last hook before switch_root, after pre-pivot):
# the firmware goes to $NEWROOT/lib/firmware/vendor as a tmpfs.
/usr/lib/pippin/vendorfw-load handoff "$NEWROOT"
