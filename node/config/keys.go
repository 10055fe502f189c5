package config

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ekisa-team/syn4pse/node/config/schema"
	"github.com/ekisa-team/syn4pse/node/models/store"
)

// modalities are what a model does, as the seed names them: [backends.stt.*], modality = "tts".
var modalities = []string{"llm", "embeddings", "rerank", "stt", "tts"}

// modalityAliases are other names accepted for the same modalities. A vision model is an LLM
// whose projector (mmproj) takes images: the seed's [backends.vision.*] declares one.
var modalityAliases = map[string]string{"embedding": "embeddings", "speech_to_text": "stt", "text_to_speech": "tts", "vision": "llm"}

// acceptedModalities are the modality names a config may use: the modalities and their aliases.
func acceptedModalities() []string {
	return append(slices.Clone(modalities), slices.Sorted(maps.Keys(modalityAliases))...)
}

// canonicalModality is the modality a config name stands for.
func canonicalModality(s string) string {
	s = strings.ToLower(s)
	if m, ok := modalityAliases[s]; ok {
		return m
	}
	return s
}

// canonicalEngine is the engine a config name stands for: the seed names engines with an "ng_"
// prefix (engine = "ng_llama_cpp"), which stands for the engine without it.
func canonicalEngine(s string) string { return strings.TrimPrefix(s, "ng_") }

// defaultValues are the built-in defaults of the static keys, flat. data_dir keeps its "~"
// until decode, so a node whose data_dir is set elsewhere never needs a home directory.
func defaultValues() map[string]any {
	values := map[string]any{
		"data_dir":                "~/.syn4pse",
		"server.host":             "127.0.0.1",
		"server.http_port":        8080,
		"server.grpc_port":        50051,
		"server.ollama_port":      -1,
		"server.shutdown_timeout": 30 * time.Second,
		"server.max_audio":        30 * time.Minute,
		"server.fetch_image_urls": false,
		"log.level":               "info",
		"log.format":              "text",
		"p2p.listen":              []string{"/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"},
		"p2p.bootstrap":           []string{},
		"p2p.allow":               []string{},
		"p2p.mdns":                true,
		"p2p.nat":                 true,
		"p2p.relay":               false,
		"p2p.name":                "",
		"p2p.announce_interval":   3 * time.Second,
		"p2p.peer_ttl":            8 * time.Second,
		"router.max_hops":         1,
		"p2p.peer_max_requests":   4,
		"p2p.peer_rate":           10.0,
		"p2p.peer_max_transfers":  2,
		"router.ban_after":        5,
		"router.ban_duration":     2 * time.Minute,
		"models.keep_alive":       "5m",
		"models.max_memory":       "0",
		"models.allow_remote":     []string{"load", "unload"},
		"models.max_queue":        64,
		"models.load_probe":       true,
		"engine.library_path":     "",
		"engine.cpu_variant":      "auto",

		// Access: API keys and TLS.
		"server.api_keys":              []string{},
		"server.allow_unauthenticated": false,
		"server.tls_cert":              "",
		"server.tls_key":               "",
	}
	maps.Copy(values, limitDefaults())
	return values
}

// keySchema is the shape of the whole configuration.
var keySchema = &schema.Node{Children: map[string]*schema.Node{
	"data_dir": {Field: &schema.Field{Kind: schema.Path}},
	"server": {Children: map[string]*schema.Node{
		"host":             {Field: &schema.Field{Kind: schema.Host}},
		"http_port":        {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: 65535}},
		"grpc_port":        {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: 65535}},
		"ollama_port":      {Field: &schema.Field{Kind: schema.Int, Min: -1, Max: 65535}},
		"shutdown_timeout": {Field: &schema.Field{Kind: schema.Duration}},
		"max_audio":        {Field: &schema.Field{Kind: schema.Duration}},
		"fetch_image_urls": {Field: &schema.Field{Kind: schema.Bool}},

		"api_keys":              {Field: &schema.Field{Kind: schema.List, Secret: true}},
		"allow_unauthenticated": {Field: &schema.Field{Kind: schema.Bool}},
		"tls_cert":              {Field: &schema.Field{Kind: schema.Path, EmptyOK: true}},
		"tls_key":               {Field: &schema.Field{Kind: schema.Path, EmptyOK: true}},
		// The limits (Limits): 0 is refused, as no request could pass it.
		"read_header_timeout": {Field: &schema.Field{Kind: schema.Duration, Positive: true}},
		"read_timeout":        {Field: &schema.Field{Kind: schema.Duration, Positive: true}},
		"idle_timeout":        {Field: &schema.Field{Kind: schema.Duration, Positive: true}},
		"write_timeout":       {Field: &schema.Field{Kind: schema.Duration, Positive: true}},
		"max_request_body":    {Field: &schema.Field{Kind: schema.Size, Positive: true}},
		"max_tokens":          {Field: &schema.Field{Kind: schema.Int, Min: 1, Max: math.MaxInt32}},
		"max_messages":        {Field: &schema.Field{Kind: schema.Int, Min: 1, Max: math.MaxInt32}},
		"max_prompt_bytes":    {Field: &schema.Field{Kind: schema.Size, Positive: true}},
		"grpc_max_message":    {Field: &schema.Field{Kind: schema.Size, Positive: true, Max: math.MaxInt32}},
		"grpc_max_streams":    {Field: &schema.Field{Kind: schema.Int, Min: 1, Max: math.MaxInt32}},
		"grpc_keepalive_min":  {Field: &schema.Field{Kind: schema.Duration, Positive: true}},
	}},
	"log": {Children: map[string]*schema.Node{
		"level":  {Field: &schema.Field{Kind: schema.Choice, Choices: []string{"debug", "info", "warn", "error"}}},
		"format": {Field: &schema.Field{Kind: schema.Choice, Choices: []string{"text", "json"}}},
	}},
	"p2p": {Children: map[string]*schema.Node{
		"listen":             {Field: &schema.Field{Kind: schema.List}},
		"bootstrap":          {Field: &schema.Field{Kind: schema.List}},
		"allow":              {Field: &schema.Field{Kind: schema.List}},
		"mdns":               {Field: &schema.Field{Kind: schema.Bool}},
		"nat":                {Field: &schema.Field{Kind: schema.Bool}},
		"relay":              {Field: &schema.Field{Kind: schema.Bool}},
		"name":               {Field: &schema.Field{Kind: schema.String, Check: checkNodeName}},
		"announce_interval":  {Field: &schema.Field{Kind: schema.Duration}},
		"peer_ttl":           {Field: &schema.Field{Kind: schema.Duration}},
		"peer_max_requests":  {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: math.MaxInt32}},
		"peer_rate":          {Field: &schema.Field{Kind: schema.Float}},
		"peer_max_transfers": {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: math.MaxInt32}},
	}},
	"router": {Children: map[string]*schema.Node{
		"max_hops":     {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: 8}},
		"ban_after":    {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: math.MaxInt32}},
		"ban_duration": {Field: &schema.Field{Kind: schema.Duration}},
	}},
	"models": {Each: modelTable(), EntryName: checkEntryName, Children: map[string]*schema.Node{
		"keep_alive":   {Field: &schema.Field{Kind: schema.Custom, Parse: parseKeepAlive}},
		"max_memory":   {Field: &schema.Field{Kind: schema.Size}},
		"allow_remote": {Field: &schema.Field{Kind: schema.List, Choices: remoteOperations}},
		"max_queue":    {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: math.MaxInt32}},
		"load_probe":   {Field: &schema.Field{Kind: schema.Bool}},
	}},
	"backends": backendTables(),
	"engine": {Children: map[string]*schema.Node{
		"library_path": {Field: &schema.Field{Kind: schema.Path, EmptyOK: true}},
		"cpu_variant":  {Field: &schema.Field{Kind: schema.Choice, Choices: cpuVariants}},
	}},
}}

// cpuVariants are the values of engine.cpu_variant: auto, the CPU code compiled into the binary,
// and the variant libraries scripts/build-native.sh builds (x86-64 and arm64).
var cpuVariants = []string{"auto", "builtin",
	"x64", "sse42", "sandybridge", "haswell", "skylakex", "icelake", "alderlake", "zen4", "sapphirerapids",
	"armv8.0_1", "armv8.2_1", "armv8.2_2", "armv8.2_3", "armv8.6_1", "armv8.6_2", "armv9.2_1", "armv9.2_2"}

// engineOptions are the keys both model shapes accept to tune the engine.
func engineOptions() map[string]*schema.Node {
	return map[string]*schema.Node{
		"context_length":  {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: math.MaxInt32}},
		"threads":         {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: 4096}},
		"batch_size":      {Field: &schema.Field{Kind: schema.Int, Min: 1, Max: math.MaxInt32}},
		"gpu_layers":      {Field: &schema.Field{Kind: schema.Int, Min: -1, Max: math.MaxInt32}},
		"main_gpu":        {Field: &schema.Field{Kind: schema.Int, Min: -1, Max: 255}},
		"parallel":        {Field: &schema.Field{Kind: schema.Int, Min: 0, Max: 1024}},
		"flash_attention": {Field: &schema.Field{Kind: schema.Choice, Choices: []string{"auto", "on", "off"}, BoolOnOff: true}},
		"voice":           {Field: &schema.Field{Kind: schema.String, Check: checkWord}},
		"language":        {Field: &schema.Field{Kind: schema.String, Check: checkWord}},
		"mmproj":          {Field: &schema.Field{Kind: schema.Path}},
		"vocoder":         {Field: &schema.Field{Kind: schema.Path}},
		"pooling":         {Field: &schema.Field{Kind: schema.Choice, Choices: []string{"mean", "cls", "last"}}},
	}
}

// modelTable is the schema of one [models.<name>] table.
func modelTable() *schema.Node {
	keys := engineOptions()
	keys["modality"] = &schema.Node{Field: &schema.Field{Kind: schema.Choice, Choices: acceptedModalities()}}
	keys["engine"] = &schema.Node{Field: &schema.Field{Kind: schema.String, Check: checkEngineName}}
	keys["path"] = &schema.Node{Field: &schema.Field{Kind: schema.Path}}
	keys["source"] = &schema.Node{Field: &schema.Field{Kind: schema.String, Check: checkSource}}
	keys["sha256"] = &schema.Node{Field: &schema.Field{Kind: schema.String, Check: checkSHA256}}
	keys["enabled"] = &schema.Node{Field: &schema.Field{Kind: schema.Bool}}
	return &schema.Node{Children: keys, Aliases: map[string]string{"model": "path"}}
}

// backendTables is the schema of [backends]: one table per modality, holding one table per
// backend id, in the shape of the seed's [backends.llm.llama_cpp].
func backendTables() *schema.Node {
	keys := engineOptions()
	keys["enabled"] = &schema.Node{Field: &schema.Field{Kind: schema.Bool}}
	keys["engine"] = &schema.Node{Field: &schema.Field{Kind: schema.String, Check: checkEngineName}}
	keys["model"] = &schema.Node{Field: &schema.Field{Kind: schema.Path}}
	keys["name"] = &schema.Node{Field: &schema.Field{Kind: schema.String, Check: checkModelName}}
	backend := &schema.Node{Children: keys, Aliases: map[string]string{"path": "model"}}
	byModality := &schema.Node{Children: map[string]*schema.Node{}, KeysAre: "modality", KeysWant: modalities}
	for _, m := range acceptedModalities() {
		byModality.Children[m] = &schema.Node{Each: backend}
	}
	return byModality
}

// The checks of the string keys below return the value kept, as schema.Field.Check does.

// checkEntryName refuses a [models] key that is no model name.
func checkEntryName(key string) error {
	if !store.ValidModelName(key) {
		return fmt.Errorf("%q is not a valid model name (letters, digits and . _ : -, up to 128)", key)
	}
	return nil
}

// checkModelName takes a model name.
func checkModelName(s string) (string, error) {
	if !store.ValidModelName(s) {
		return "", fmt.Errorf("want a model name (letters, digits and . _ : -, up to 128), got %q", s)
	}
	return s, nil
}

// checkSource takes where a model is pulled from: an http(s) URL or hf://OWNER/REPO/FILE[@REV].
func checkSource(s string) (string, error) {
	if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "hf://") {
		return "", fmt.Errorf("want an http(s):// URL or hf://OWNER/REPO/FILE[@REVISION], got %q", s)
	}
	return s, nil
}

// checkSHA256 takes 64 hex digits, with or without "sha256:", and keeps them in lower case.
func checkSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimPrefix(s, "sha256:"))
	if len(s) != 64 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", fmt.Errorf("want 64 hex digits, got %q", s)
	}
	return s, nil
}

// checkNodeName takes a node name shown to peers, "" for the host name.
func checkNodeName(s string) (string, error) {
	if s != "" && !store.ValidModelName(s) {
		return "", fmt.Errorf("want a node name (letters, digits and . _ : -, up to 128) or \"\" for the host name, got %q", s)
	}
	return s, nil
}

var engineNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// checkEngineName takes an engine name.
func checkEngineName(s string) (string, error) {
	if !engineNameRE.MatchString(s) {
		return "", fmt.Errorf("want an engine name such as \"llama_cpp\", got %q", s)
	}
	return s, nil
}

var wordRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_+.:-]*$`)

// checkWord takes one word of letters, digits and _ + . : - (a voice, a language tag).
func checkWord(s string) (string, error) {
	if !wordRE.MatchString(s) {
		return "", fmt.Errorf("want one word such as \"en-us\" or \"slt\", got %q", s)
	}
	return s, nil
}

// parseKeepAlive takes a keep-alive (ParseKeepAlive) from any layer, a TOML number included,
// and keeps it as a string.
func parseKeepAlive(raw any) (any, error) {
	if _, err := ParseKeepAlive(fmt.Sprint(raw)); err != nil {
		return nil, err
	}
	return fmt.Sprint(raw), nil
}

// remoteOperations are what models.allow_remote may let peers do.
var remoteOperations = []string{"load", "unload", "pull", "delete"}

// KeepForever is the keep-alive of a model that never unloads by itself.
const KeepForever time.Duration = -1

// ParseKeepAlive reads a keep-alive: a Go duration ("5m", "1h30m"), a number of seconds, "0" to
// unload as soon as the model is idle, or any negative value ("-1") to keep it loaded.
func ParseKeepAlive(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return KeepForever, nil
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as \"5m\", \"0\" (unload when idle) or \"-1\" (keep loaded), got %q", s)
	}
	if d < 0 {
		return KeepForever, nil
	}
	return d, nil
}
