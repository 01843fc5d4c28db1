package disk

import (
	"fmt"
	"strings"
	"time"
)

// Kind is the class of storage medium under the data directory.
type Kind string

// The kinds of medium, each with its own derivation rules.
const (
	KindUnknown Kind = "unknown" // no block device, or nothing conclusive
	KindSD      Kind = "sd"      // SD card or removable USB flash: slow syncs, wears out
	KindEMMC    Kind = "emmc"    // soldered eMMC: faster than SD, still wears out
	KindHDD     Kind = "hdd"     // spinning disk: seeks cost milliseconds
	KindSSD     Kind = "ssd"     // SATA/SAS SSD, or a virtual disk that behaves like one
	KindNVMe    Kind = "nvme"    // NVMe SSD
)

// conservativeRank orders kinds from fastest to slowest and most
// wear-prone; a stack of devices is treated as its highest rank.
func conservativeRank(k Kind) int {
	switch k {
	case KindNVMe:
		return 0
	case KindSSD:
		return 1
	case KindUnknown:
		return 2
	case KindHDD:
		return 3
	case KindEMMC:
		return 4
	case KindSD:
		return 5
	}
	return 2
}

// Thresholds that separate a spinning disk from flash by measurement. A
// disk that honours cache flushes cannot complete a 4 KiB write+fdatasync
// faster than about one rotation-and-seek (several ms at 7,200 rpm) nor
// serve more than a few hundred random reads a second at queue depth 1.
const (
	fastSyncP50 = 1500 * time.Microsecond // below: not a spinning disk
	slowSyncP50 = 4 * time.Millisecond    // above (with slow reads): spinning
	fastIOPS    = 1000                    // random 4 KiB reads/s at QD1 above: flash
	slowIOPS    = 300                     // below: seeks
)

// Classify decides the kind of medium from the device's sysfs facts and,
// when m is not nil, the probe's measurements. It also reports whether the
// medium is wear-sensitive (SD, eMMC, USB flash: the probe is skipped and
// syncs are batched harder) and the reasons behind the decision.
//
// queue/rotational alone is never trusted: names (mmcblk*, nvme*), the MMC
// device/type, the bus (virtio and Xen disks claim rotational=1 whatever
// backs them), the scheduler an administrator chose and the measured sync
// latency and random-read rate all count, measurements last and strongest.
func Classify(dev Device, m *Measurements) (Kind, bool, []string) {
	var why []string
	add := func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }

	switch {
	case dev.Name == "":
		add("no block device under the filesystem")
		return KindUnknown, false, why
	case dev.Bus == "mmc":
		switch strings.ToUpper(dev.MMCType) {
		case "MMC":
			add("%s is an MMC block device with device/type=MMC: eMMC", dev.Name)
			return KindEMMC, true, why
		case "SD":
			add("%s is an MMC block device with device/type=SD: SD card", dev.Name)
		default:
			add("%s is an MMC block device (device/type %q): treated as an SD card", dev.Name, dev.MMCType)
		}
		return KindSD, true, why
	case dev.Bus == "nvme":
		add("%s is an NVMe namespace", dev.Name)
		return KindNVMe, false, why
	case dev.Bus == "usb" && dev.Removable:
		add("%s is removable USB storage: treated as flash that wears", dev.Name)
		return KindSD, true, why
	case dev.Bus == "ram":
		add("%s is memory-backed", dev.Name)
		return KindUnknown, false, why
	}

	if m != nil {
		if k, ok := classifyMeasured(m, &why); ok {
			return k, false, why
		}
	}

	trusted := dev.Bus != "virtio" && dev.Bus != "xen"
	switch {
	case !trusted && dev.Rotational:
		add("%s is a %s disk: its rotational=1 is not trusted", dev.Name, dev.Bus)
	case !trusted:
		add("%s is a %s disk reporting rotational=0", dev.Name, dev.Bus)
		return KindSSD, false, why
	case dev.Rotational && (dev.Scheduler == "none" || dev.Scheduler == "noop"):
		add("%s reports rotational=1 but runs the %s scheduler, which suits flash", dev.Name, dev.Scheduler)
		return KindSSD, false, why
	case dev.Rotational:
		add("%s reports rotational=1", dev.Name)
		return KindHDD, false, why
	default:
		add("%s reports rotational=0", dev.Name)
		return KindSSD, false, why
	}
	// A virtual disk whose flag cannot be trusted and nothing measured:
	// virtual disks are nearly always backed by flash or a cache.
	add("not measured: assumed to behave like an SSD")
	return KindSSD, false, why
}

// classifyMeasured decides between flash and a spinning disk from the
// probe alone, when the numbers are conclusive.
func classifyMeasured(m *Measurements, why *[]string) (Kind, bool) {
	sync4k, haveSync := m.SyncAt(4096)
	iops := m.RandRead.IOPS
	add := func(format string, args ...any) { *why = append(*why, fmt.Sprintf(format, args...)) }
	switch {
	case iops >= fastIOPS:
		add("measured %.0f random 4 KiB reads/s at QD1 (>= %d): flash", iops, fastIOPS)
		return KindSSD, true
	case iops == 0 && haveSync && sync4k.P50.D() < fastSyncP50:
		add("measured 4 KiB write+fdatasync p50 %s (< %s): flash", sync4k.P50, Latency(fastSyncP50))
		return KindSSD, true
	case iops > 0 && iops < slowIOPS && (!haveSync || sync4k.P50.D() > slowSyncP50):
		add("measured %.0f random 4 KiB reads/s at QD1 (< %d): seeks like a spinning disk", iops, slowIOPS)
		return KindHDD, true
	case iops == 0 && haveSync && sync4k.P50.D() > 2*slowSyncP50:
		add("measured 4 KiB write+fdatasync p50 %s (> %s): slow like a spinning disk", sync4k.P50, Latency(2*slowSyncP50))
		return KindHDD, true
	}
	return "", false
}
