package partlog

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// checkpointFile holds a partition's log start offset and recovery point.
// It is small, written atomically (temp file, sync, rename, sync dir), and
// versioned: a newer version is refused rather than misread.
const checkpointFile = "partition.checkpoint"

const checkpointVersion = 1

type checkpoint struct {
	logStart      int64
	recoveryPoint int64
	cleanerOffset int64 // first offset the log cleaner has not compacted yet
}

func (c checkpoint) encode() []byte {
	return fmt.Appendf(nil, "version %d\nlog-start-offset %d\nrecovery-point %d\ncleaner-offset %d\n", checkpointVersion, c.logStart, c.recoveryPoint, c.cleanerOffset)
}

func decodeCheckpoint(buf []byte) (checkpoint, error) {
	var c checkpoint
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(buf))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		key, val, ok := strings.Cut(line, " ")
		if !ok {
			return c, fmt.Errorf("line %q: want \"key value\"", line)
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 {
			return c, fmt.Errorf("%s: %q is not a non-negative integer", key, val)
		}
		switch key {
		case "version":
			if n != checkpointVersion {
				return c, fmt.Errorf("version %d is not supported (this build reads version %d)", n, checkpointVersion)
			}
		case "log-start-offset":
			c.logStart = n
		case "recovery-point":
			c.recoveryPoint = n
		case "cleaner-offset":
			c.cleanerOffset = n
		default:
			continue // a later minor addition; ignore
		}
		seen[key] = true
	}
	for _, k := range []string{"version", "log-start-offset", "recovery-point"} {
		if !seen[k] {
			return c, fmt.Errorf("missing %s", k)
		}
	}
	return c, nil
}

func readCheckpoint(fsys vfs.FS, dir string) (checkpoint, bool, error) {
	buf, err := vfs.ReadFile(fsys, dir+"/"+checkpointFile)
	if vfs.IsNotExist(err) {
		return checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint{}, false, fmt.Errorf("read %s: %w", checkpointFile, err)
	}
	c, err := decodeCheckpoint(buf)
	if err != nil {
		return c, false, fmt.Errorf("read %s in %s: %w", checkpointFile, dir, err)
	}
	return c, true, nil
}

func writeCheckpoint(fsys vfs.FS, dir string, c checkpoint) error {
	if err := vfs.WriteFileAtomic(fsys, dir, checkpointFile, c.encode()); err != nil {
		return fmt.Errorf("write %s: %w", checkpointFile, err)
	}
	return nil
}
