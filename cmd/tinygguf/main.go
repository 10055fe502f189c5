// Command tinygguf writes a small random-weight GGUF model that real llama.cpp loads and runs,
// for tests, benchmarks and trying SYN4PSE without downloading weights.
//
//	go run ./cmd/tinygguf -arch llama -o models/tiny.gguf [-size tiny|bench] [-seed N] [-ctx N]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

func main() {
	var opts tinygguf.Options
	out := flag.String("o", "", "output path (required)")
	flag.StringVar(&opts.Arch, "arch", "llama", "architecture: llama")
	flag.StringVar(&opts.Size, "size", "tiny", "tiny (a few hundred KB) or bench (about 270 MB, F16)")
	flag.Int64Var(&opts.Seed, "seed", 1, "seed of the random weights")
	flag.IntVar(&opts.ContextLength, "ctx", 0, "trained context length (0 = the size's default)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: tinygguf -o PATH [-arch llama] [-size tiny|bench] [-seed N] [-ctx N]")
		os.Exit(2)
	}
	if err := tinygguf.Write(*out, opts); err != nil {
		fmt.Fprintln(os.Stderr, "tinygguf:", err)
		os.Exit(1)
	}
	fi, err := os.Stat(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tinygguf:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: %s %s model, seed %d, %d bytes\n", *out, opts.Arch, opts.Size, opts.Seed, fi.Size())
}
