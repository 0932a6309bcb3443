#!/bin/sh
# dracut pre-pivot hook (sourced): the firmware goes to $NEWROOT/lib/firmware/vendor (tmpfs).
/usr/lib/pippin/vendorfw-load handoff "$NEWROOT"
