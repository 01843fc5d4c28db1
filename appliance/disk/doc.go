// Package disk learns what the data directory is stored on and turns that
// into storage settings: the io-profile.
//
// Four steps, each usable alone:
//
//   - Discover (every start, cheap, no writes): the filesystem holding the
//     data directory (statfs, /proc/self/mountinfo), the block device under
//     it (/sys/dev/block/MAJ:MIN, partition -> disk, dm/md -> slaves, loop
//     -> backing file), the device's queue attributes, model and serial, the
//     RAM and CPUs the process may use (cgroup limits included) and the
//     kernel. Every sysfs and procfs read goes through Options.Root, so tests
//     run against fake trees.
//   - Probe (first start or a changed device): a bounded benchmark in the
//     data directory with one capped test file: sequential write bandwidth,
//     the write+fdatasync latency curve for 4 KiB..1 MiB batches, appends to
//     a growing versus a preallocated file, random 4 KiB reads (O_DIRECT
//     where the filesystem allows it, else buffered reads after
//     FADV_DONTNEED) and sequential reads past the page cache.
//   - Classify and Derive (pure): the medium's kind (SD card, eMMC, HDD,
//     SSD, NVMe) from names, sysfs attributes and, when present, the
//     measurements; then the settings, each with the rule that chose it.
//   - Ensure: the start-up path. It loads <data>/io-profile.json, re-probes
//     when the device fingerprint changed (never on SD/eMMC unless forced),
//     derives, and writes <data>/io-profile.toml (configuration keys only,
//     the io-profile layer of config.Load) and io-profile.json (fingerprint,
//     measurements, derivation inputs and every derived value with its rule).
//
// docs/TUNING.md describes the rules for operators.
package disk
