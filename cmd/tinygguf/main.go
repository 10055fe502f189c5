// Command tinygguf writes a small random-weight GGUF model that real llama.cpp loads and runs,
// for tests, benchmarks and trying SYN4PSE without downloading weights.
//
//	go run ./cmd/tinygguf -arch llama -o models/tiny.gguf [-size tiny|bench] [-seed N] [-ctx N]
//	go run ./cmd/tinygguf -o models/tiny.gguf -mmproj-audio models/tiny-mmproj.gguf
//	go run ./cmd/tinygguf -o models/tiny.gguf -mmproj-vision models/tiny-mmproj-vision.gguf
//
// A text-to-speech pair for the "outetts" engine: -arch outetts (the LLM, path) and
// -arch wavtokenizer (its vocoder).
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ollama/ollama/fs/ggml"
)

func main() {
	var opts tinygguf.Options
	var out, templatePath, audioProjector, visionProjector string
	flags := flag.NewFlagSet("tinygguf", flag.ContinueOnError)
	flags.StringVar(&out, "o", "", "output `path` (required); an existing file is replaced whole")
	flags.StringVar(&opts.Arch, "arch", "llama", "architecture: llama (chat LLM), bert (embeddings), outetts (text-to-speech LLM, audio-code vocabulary) or wavtokenizer (OuteTTS's vocoder, wavtokenizer-dec)")
	flags.StringVar(&opts.Size, "size", "tiny", "tiny (a few hundred KB, F32) or bench (a few hundred MB, F16)")
	flags.Int64Var(&opts.Seed, "seed", 1, "seed of the random weights: the same seed writes the same bytes")
	flags.IntVar(&opts.ContextLength, "ctx", 0, "trained context length (0 = the size's default)")
	flags.StringVar(&templatePath, "chat-template", "", "`file` holding a Jinja chat template (default: ChatML)")
	flags.StringVar(&audioProjector, "mmproj-audio", "", "also write a random Qwen2-Audio projector (mmproj) for the tiny llama model to `path`: it makes the model take audio")
	flags.StringVar(&visionProjector, "mmproj-vision", "", "also write a random LLaVA projector (mmproj: CLIP encoder, mlp projector) for the tiny llama model to `path`: it makes the model take images")
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), "Usage: tinygguf -o PATH [-arch llama|bert|outetts|wavtokenizer] [-size tiny|bench] [-seed N] [-ctx N] [-mmproj-audio PATH] [-mmproj-vision PATH]\n\n"+
			"Writes a random-weight GGUF model that llama.cpp loads and runs. Its output is gibberish;\n"+
			"its loading, tokenizing and decoding are real.\n\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if out == "" || flags.NArg() > 0 {
		flags.Usage()
		os.Exit(2)
	}
	if (audioProjector != "" || visionProjector != "") && (opts.Arch != "llama" || opts.Size != "tiny") {
		fmt.Fprintln(flags.Output(), "-mmproj-audio, -mmproj-vision: the projectors fit the tiny llama model only (-arch llama -size tiny)")
		os.Exit(2)
	}
	if err := run(out, templatePath, opts); err != nil {
		slog.Error("tinygguf failed", "err", err)
		os.Exit(1)
	}
	if audioProjector != "" {
		if err := tinygguf.WriteAudioProjector(audioProjector, opts.Seed); err != nil {
			slog.Error("tinygguf failed", "err", err)
			os.Exit(1)
		}
		fmt.Printf("wrote %s: a Qwen2-Audio projector (%d Hz audio) for %s\n", audioProjector, tinygguf.AudioSampleRate, out)
	}
	if visionProjector != "" {
		if err := tinygguf.WriteVisionProjector(visionProjector, opts.Seed); err != nil {
			slog.Error("tinygguf failed", "err", err)
			os.Exit(1)
		}
		fmt.Printf("wrote %s: a LLaVA projector (%d tokens an image) for %s\n", visionProjector, tinygguf.VisionImageTokens, out)
	}
}

// run writes the model, reads it back and prints what is in it.
func run(out, templatePath string, opts tinygguf.Options) error {
	if templatePath != "" {
		b, err := os.ReadFile(templatePath)
		if err != nil {
			return fmt.Errorf("read chat template: %w", err)
		}
		opts.ChatTemplate = string(b)
	}
	if err := tinygguf.Write(out, opts); err != nil {
		return err
	}
	f, err := os.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	model, err := ggml.Decode(f, 0)
	if err != nil {
		return fmt.Errorf("read back %s: %w", out, err)
	}
	kv := model.KV()
	weights := "F32"
	if kv.Uint("general.file_type") == 1 {
		weights = "F16"
	}
	fmt.Printf("wrote %s: %s, %d layers, n_embd %d, ctx %d, %d tensors, %d parameters, %s, seed %d, %d bytes\n",
		out, kv.String("general.name"), kv.BlockCount(), kv.EmbeddingLength(), kv.ContextLength(),
		len(model.Tensors().Items()), kv.ParameterCount(), weights, opts.Seed, fi.Size())
	return nil
}
