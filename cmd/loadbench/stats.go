package main

import (
	"math"
	"slices"
	"time"
)

// The statistics below skip NaN values (a measure a round could not take) and return NaN when
// no value is left.

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of xs: the smallest value with at
// least p% of the values at or below it.
func percentile(xs []float64, p float64) float64 {
	s := sorted(xs)
	if len(s) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// median is the middle value of xs, the mean of the two middle ones for an even count.
func median(xs []float64) float64 {
	s := sorted(xs)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// mean is the average of xs.
func mean(xs []float64) float64 {
	s := sorted(xs)
	if len(s) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range s {
		sum += x
	}
	return sum / float64(len(s))
}

// sorted is a sorted copy of xs without its NaNs.
func sorted(xs []float64) []float64 {
	s := slices.DeleteFunc(slices.Clone(xs), math.IsNaN)
	slices.Sort(s)
	return s
}

// gapsIn returns the gaps between consecutive events whose later event falls in (from, to];
// with straddle, also the gap to the first event after to, so that a stream stalled across the
// whole window still counts its stall. The gap to the first event (the time to first token) is
// never included.
func gapsIn(events []time.Time, from, to time.Time, straddle bool) []float64 {
	var gaps []float64
	for i := 1; i < len(events); i++ {
		if !events[i].After(from) {
			continue
		}
		gaps = append(gaps, events[i].Sub(events[i-1]).Seconds())
		if events[i].After(to) {
			if !straddle {
				gaps = gaps[:len(gaps)-1]
			}
			break
		}
	}
	return gaps
}
