package partlog

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/eddybroker/eddy/appliance/storage/segment"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// SwapSuffix marks a rewritten segment (compaction) that is complete and
// synced but not yet in place of the segments it replaces. The rewrite
// protocol is: write "<base>.log.cleaned" (and its indexes), sync, rename
// each to ".swap", sync the directory, delete the replaced segments, rename
// the ".swap" files to their final names, sync the directory. A crash before
// the ".swap" renames leaves ".cleaned" files, which load discards; a crash
// after them is finished here.
const SwapSuffix = ".swap"

// finishSwaps completes interrupted swaps found in names.
func (l *Log) finishSwaps(names []string) error {
	done := false
	for _, n := range names {
		if !strings.HasSuffix(n, segment.LogSuffix+SwapSuffix) {
			continue
		}
		base, ok := parseBase(strings.TrimSuffix(n, SwapSuffix), segment.LogSuffix)
		if !ok {
			return fmt.Errorf("unexpected file %s", n)
		}
		next, err := segment.NextOffsetOfFile(l.fsys, filepath.Join(l.dir, n), base)
		if err != nil {
			return fmt.Errorf("finish swap of %s: %w", n, err)
		}
		// Delete the segments the swap replaces: bases in [base, next).
		for _, m := range names {
			for _, suf := range []string{segment.LogSuffix, segment.IndexSuffix, segment.TimeIndexSuffix} {
				if b, ok := parseBase(m, suf); ok && b >= base && b < max(next, base+1) {
					if err := l.fsys.Remove(filepath.Join(l.dir, m)); err != nil && !vfs.IsNotExist(err) {
						return fmt.Errorf("finish swap of %s: %w", n, err)
					}
				}
			}
		}
		for _, suf := range []string{segment.LogSuffix, segment.IndexSuffix, segment.TimeIndexSuffix} {
			from := filepath.Join(l.dir, segment.Name(base, suf)+SwapSuffix)
			if err := l.fsys.Rename(from, filepath.Join(l.dir, segment.Name(base, suf))); err != nil && !vfs.IsNotExist(err) {
				return fmt.Errorf("finish swap of %s: %w", n, err)
			}
		}
		done = true
	}
	// Index swaps whose log swap already landed are stale.
	for _, n := range names {
		if strings.HasSuffix(n, SwapSuffix) && !strings.HasSuffix(n, segment.LogSuffix+SwapSuffix) {
			if err := l.fsys.Remove(filepath.Join(l.dir, n)); err != nil && !vfs.IsNotExist(err) {
				return err
			}
			done = true
		}
	}
	if done {
		return l.fsys.SyncDir(l.dir)
	}
	return nil
}
