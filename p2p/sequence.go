package p2p

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// sequenceFile holds, in the data dir, the least capability sequence the node's next run may
// start from.
const sequenceFile = "announce-sequence"

// sequenceBlock is how many sequences one run reserves: far more announcements than a run
// makes (one every few seconds), so a run never passes its reservation.
const sequenceBlock = 1 << 40

// ReserveSequences returns the first capability sequence for this run of the node whose data
// dir is dataDir: the current time in nanoseconds, or past every sequence an earlier run could
// have used when that is higher (the clock was stepped back between runs). It records the end
// of this run's block (written atomically) before returning, so a crash cannot reuse a
// sequence. Peers ignore announcements whose sequence is not newer than one they hold, so a
// node whose clock went back would otherwise go unheard until they forget it.
func ReserveSequences(dataDir string, now time.Time) (uint64, error) {
	path := filepath.Join(dataDir, sequenceFile)
	first := uint64(max(now.UnixNano(), 0))
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("announce sequence: %w", err)
	default:
		floor, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("announce sequence: %s holds %q, not a number: delete it and restart", path, strings.TrimSpace(string(b)))
		}
		first = max(first, floor)
	}
	if first > ^uint64(0)-sequenceBlock {
		return 0, fmt.Errorf("announce sequence: %s is at the end of the sequence space: delete it and restart", path)
	}
	if err := durable.WriteFile(path, []byte(strconv.FormatUint(first+sequenceBlock, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("announce sequence: %w", err)
	}
	return first, nil
}
