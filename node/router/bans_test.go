package router

import (
	"errors"
	"testing"
	"time"
)

func TestBansCountConsecutiveFaults(t *testing.T) {
	b := NewBans(3, 2*time.Minute)
	now := time.Unix(1_000_000, 0)
	b.now = func() time.Time { return now }
	fault := errors.New("unreachable")

	b.Fault("A", fault)
	b.Fault("A", fault)
	b.Success("A") // a success in between resets the run
	b.Fault("A", fault)
	b.Fault("A", fault)
	if b.Banned("A") {
		t.Fatal("banned after 2 consecutive faults, want 3")
	}
	b.Fault("A", fault)
	if !b.Banned("A") {
		t.Fatal("not banned after 3 consecutive faults")
	}
	if b.Banned("B") {
		t.Fatal("a peer with no fault is banned")
	}
	b.Success("A") // from a call that started before the ban
	now = now.Add(2*time.Minute - time.Second)
	if !b.Banned("A") {
		t.Fatal("ban lifted by a success or before its end")
	}
	now = now.Add(time.Second)
	if b.Banned("A") {
		t.Fatal("still banned at the end of router.ban_duration")
	}
	b.Fault("A", fault) // a new run starts from zero
	if b.Banned("A") {
		t.Fatal("banned again after one fault once the ban ended")
	}
}

func TestBansOff(t *testing.T) {
	var nilBans *Bans
	nilBans.Fault("A", nil)
	nilBans.Success("A")
	for _, b := range []*Bans{nilBans, NewBans(0, time.Minute), NewBans(5, 0)} {
		for range 10 {
			b.Fault("A", errors.New("down"))
		}
		if b.Banned("A") {
			t.Errorf("%+v banned a peer", b)
		}
	}
}
