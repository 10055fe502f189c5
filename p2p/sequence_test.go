package p2p

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReserveSequencesSurvivesAClockSteppedBack(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	first, err := ReserveSequences(dir, now)
	if err != nil || first != uint64(now.UnixNano()) {
		t.Fatalf("first run: %d, %v; want the time, %d", first, err, now.UnixNano())
	}
	// The clock went back an hour: the next run still starts past every sequence the first
	// could have used.
	second, err := ReserveSequences(dir, now.Add(-time.Hour))
	if err != nil || second < first+sequenceBlock {
		t.Fatalf("second run after the clock stepped back: %d, %v; want at least %d", second, err, first+sequenceBlock)
	}
	// The clock far ahead of the reservation: the time wins.
	later := now.Add(24 * 365 * time.Hour)
	third, err := ReserveSequences(dir, later)
	if err != nil || third != uint64(later.UnixNano()) {
		t.Fatalf("third run: %d, %v; want the time, %d", third, err, later.UnixNano())
	}

	if err := os.WriteFile(filepath.Join(dir, sequenceFile), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReserveSequences(dir, now); err == nil {
		t.Fatal("a corrupt sequence file was taken")
	}
}
