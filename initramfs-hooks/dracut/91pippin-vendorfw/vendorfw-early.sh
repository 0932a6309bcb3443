#!/bin/sh
# dracut pre-udev hook (sourced): fill /vendorfw before udev loads firmware-needing drivers.
/usr/lib/pippin/vendorfw-load early
