#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it by path; no
# browser is ever downloaded by a test tool).
source "$(dirname "$0")/common.sh"
apt_install chromium
log "Chromium: $(chromium --version 2>/dev/null || echo missing)"
