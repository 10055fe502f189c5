package main

import (
	"encoding/json"
	"errors"

	"github.com/spf13/cobra"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// embedOutput is what embed prints.
type embedOutput struct {
	Model        string      `json:"model"`
	Embeddings   [][]float32 `json:"embeddings"`
	PromptTokens int32       `json:"prompt_tokens"`
	ServedBy     string      `json:"served_by,omitempty"`
}

func newEmbedCmd() *cobra.Command {
	var normalize, truncate bool
	cmd := &cobra.Command{
		Use:   "embed MODEL TEXT...",
		Short: "Turn texts into vectors with an embeddings model; prints JSON",
		Long: `Embed each TEXT with an embeddings model of the mesh and print the vectors as JSON:
{"model": ..., "embeddings": [[...], ...], "prompt_tokens": N}, one vector per TEXT in order.

  syn4pse embed nomic "the cat sat on the mat" "a dog in the park"
  syn4pse embed nomic --normalize=false "raw vector"

Vectors are normalised to unit length unless --normalize=false. A text longer than the model's
context fails, naming it, unless --truncate.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError{errors.New("embed needs a MODEL and at least one TEXT")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer conn.Close()
			req := &pb.EmbedRequest{Model: args[0], Normalize: normalize, Truncate: truncate}
			for _, text := range args[1:] {
				req.Inputs = append(req.Inputs, &pb.EmbedInput{Input: &pb.EmbedInput_Text{Text: text}})
			}
			res, err := pb.NewInferenceServiceClient(conn).Embed(cmd.Context(), req)
			if err != nil {
				return rpcError(conn.Target(), err)
			}
			out := embedOutput{Model: res.GetModel(), PromptTokens: res.GetPromptTokens(), ServedBy: res.GetServedBy()}
			for _, e := range res.GetEmbeddings() {
				out.Embeddings = append(out.Embeddings, e.GetValues())
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			return enc.Encode(out)
		},
	}
	cmd.Flags().BoolVar(&normalize, "normalize", true, "scale each vector to unit length")
	cmd.Flags().BoolVar(&truncate, "truncate", false, "cut a text longer than the model's context instead of failing")
	return cmd
}
