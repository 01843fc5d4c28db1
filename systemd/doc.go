// Package systemd holds no code: its directory ships the files that run
// Eddy as a hardened systemd service (eddy.service, eddy.socket, the
// sysusers.d, tmpfiles.d and sysctl.d drop-ins, and install.mk), and its
// tests check them offline: systemd-analyze verify must print nothing,
// systemd-analyze security must rate the service 2.0 or better, and
// install.mk must lay the files out where the units expect them without
// overwriting an operator's configuration. README.md is the operator's
// guide.
package systemd
