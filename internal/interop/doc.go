// Package interop tests resocket against servers and proxies written by
// others, run as separate processes: Python websockets, Node ws and nginx.
// Locally a missing peer skips its tests with an install hint; under
// CI=true a missing peer fails them. .ci/run installs all three.
package interop
