package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

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

// node is one level of the schema: a value (field set) or a table. A table has fixed keys
// (children), or entries under names the user chooses (each), as in [models.<name>].
type node struct {
	field      *field
	children   map[string]*node
	each       *node
	modelNames bool              // the entry names of each are model names and must be valid ones
	keysAre    string            // what the keys of children are, for messages: "key" unless set
	aliases    map[string]string // keys people write by mistake, and the key they meant
}

// child is the schema of key inside table n, nil when the key is unknown.
func (n *node) child(key string) *node {
	if c, ok := n.children[key]; ok {
		return c
	}
	return n.each
}

// schema is the shape of the whole configuration.
var schema = &node{children: map[string]*node{
	"data_dir": {field: &field{kind: kindPath}},
	"server": {children: map[string]*node{
		"host":             {field: &field{kind: kindHost}},
		"http_port":        {field: &field{kind: kindInt, min: 0, max: 65535}},
		"grpc_port":        {field: &field{kind: kindInt, min: 0, max: 65535}},
		"ollama_port":      {field: &field{kind: kindInt, min: -1, max: 65535}},
		"shutdown_timeout": {field: &field{kind: kindDuration}},
		"max_audio":        {field: &field{kind: kindDuration}},
		"fetch_image_urls": {field: &field{kind: kindBool}},

		"api_keys":              {field: &field{kind: kindList, secret: true}},
		"allow_unauthenticated": {field: &field{kind: kindBool}},
		"tls_cert":              {field: &field{kind: kindPath, emptyOK: true}},
		"tls_key":               {field: &field{kind: kindPath, emptyOK: true}},
		// The limits (Limits): 0 is refused, as no request could pass it.
		"read_header_timeout": {field: &field{kind: kindDuration, positive: true}},
		"read_timeout":        {field: &field{kind: kindDuration, positive: true}},
		"idle_timeout":        {field: &field{kind: kindDuration, positive: true}},
		"write_timeout":       {field: &field{kind: kindDuration, positive: true}},
		"max_request_body":    {field: &field{kind: kindSize, positive: true}},
		"max_tokens":          {field: &field{kind: kindInt, min: 1, max: math.MaxInt32}},
		"max_messages":        {field: &field{kind: kindInt, min: 1, max: math.MaxInt32}},
		"max_prompt_bytes":    {field: &field{kind: kindSize, positive: true}},
		"grpc_max_message":    {field: &field{kind: kindSize, positive: true, max: math.MaxInt32}},
		"grpc_max_streams":    {field: &field{kind: kindInt, min: 1, max: math.MaxInt32}},
		"grpc_keepalive_min":  {field: &field{kind: kindDuration, positive: true}},
	}},
	"log": {children: map[string]*node{
		"level":  {field: &field{kind: kindChoice, choices: []string{"debug", "info", "warn", "error"}}},
		"format": {field: &field{kind: kindChoice, choices: []string{"text", "json"}}},
	}},
	"p2p": {children: map[string]*node{
		"listen":             {field: &field{kind: kindList}},
		"bootstrap":          {field: &field{kind: kindList}},
		"allow":              {field: &field{kind: kindList}},
		"mdns":               {field: &field{kind: kindBool}},
		"nat":                {field: &field{kind: kindBool}},
		"relay":              {field: &field{kind: kindBool}},
		"name":               {field: &field{kind: kindNodeName}},
		"announce_interval":  {field: &field{kind: kindDuration}},
		"peer_ttl":           {field: &field{kind: kindDuration}},
		"peer_max_requests":  {field: &field{kind: kindInt, min: 0, max: math.MaxInt32}},
		"peer_rate":          {field: &field{kind: kindFloat}},
		"peer_max_transfers": {field: &field{kind: kindInt, min: 0, max: math.MaxInt32}},
	}},
	"router": {children: map[string]*node{
		"max_hops":     {field: &field{kind: kindInt, min: 0, max: 8}},
		"ban_after":    {field: &field{kind: kindInt, min: 0, max: math.MaxInt32}},
		"ban_duration": {field: &field{kind: kindDuration}},
	}},
	"models": {each: modelTable(), modelNames: true, children: map[string]*node{
		"keep_alive":   {field: &field{kind: kindKeepAlive}},
		"max_memory":   {field: &field{kind: kindSize}},
		"allow_remote": {field: &field{kind: kindList, choices: remoteOperations}},
		"max_queue":    {field: &field{kind: kindInt, min: 0, max: math.MaxInt32}},
		"load_probe":   {field: &field{kind: kindBool}},
	}},
	"backends": backendTables(),
	"engine": {children: map[string]*node{
		"library_path": {field: &field{kind: kindPath, emptyOK: true}},
		"cpu_variant":  {field: &field{kind: kindChoice, choices: cpuVariants}},
	}},
}}

// cpuVariants are the values of engine.cpu_variant: auto, the CPU code compiled into the binary,
// and the variant libraries scripts/build-native.sh builds (x86-64 and arm64).
var cpuVariants = []string{"auto", "builtin",
	"x64", "sse42", "sandybridge", "haswell", "skylakex", "icelake", "alderlake", "zen4", "sapphirerapids",
	"armv8.0_1", "armv8.2_1", "armv8.2_2", "armv8.2_3", "armv8.6_1", "armv8.6_2", "armv9.2_1", "armv9.2_2"}

// engineOptions are the keys both model shapes accept to tune the engine.
func engineOptions() map[string]*node {
	return map[string]*node{
		"context_length":  {field: &field{kind: kindInt, min: 0, max: math.MaxInt32}},
		"threads":         {field: &field{kind: kindInt, min: 0, max: 4096}},
		"batch_size":      {field: &field{kind: kindInt, min: 1, max: math.MaxInt32}},
		"gpu_layers":      {field: &field{kind: kindInt, min: -1, max: math.MaxInt32}},
		"main_gpu":        {field: &field{kind: kindInt, min: -1, max: 255}},
		"parallel":        {field: &field{kind: kindInt, min: 0, max: 1024}},
		"flash_attention": {field: &field{kind: kindChoice, choices: []string{"auto", "on", "off"}, boolOnOff: true}},
		"voice":           {field: &field{kind: kindWord}},
		"language":        {field: &field{kind: kindWord}},
		"mmproj":          {field: &field{kind: kindPath}},
		"vocoder":         {field: &field{kind: kindPath}},
		"pooling":         {field: &field{kind: kindChoice, choices: []string{"mean", "cls", "last"}}},
	}
}

// modelTable is the schema of one [models.<name>] table.
func modelTable() *node {
	keys := engineOptions()
	keys["modality"] = &node{field: &field{kind: kindChoice, choices: acceptedModalities()}}
	keys["engine"] = &node{field: &field{kind: kindEngine}}
	keys["path"] = &node{field: &field{kind: kindPath}}
	keys["source"] = &node{field: &field{kind: kindSource}}
	keys["sha256"] = &node{field: &field{kind: kindSHA256}}
	keys["enabled"] = &node{field: &field{kind: kindBool}}
	return &node{children: keys, aliases: map[string]string{"model": "path"}}
}

// backendTables is the schema of [backends]: one table per modality, holding one table per
// backend id, in the shape of the seed's [backends.llm.llama_cpp].
func backendTables() *node {
	keys := engineOptions()
	keys["enabled"] = &node{field: &field{kind: kindBool}}
	keys["engine"] = &node{field: &field{kind: kindEngine}}
	keys["model"] = &node{field: &field{kind: kindPath}}
	keys["name"] = &node{field: &field{kind: kindName}}
	backend := &node{children: keys, aliases: map[string]string{"path": "model"}}
	byModality := &node{children: map[string]*node{}, keysAre: "modality"}
	for _, m := range acceptedModalities() {
		byModality.children[m] = &node{each: backend}
	}
	return byModality
}

// kind says how a field's value is read and checked.
type kind int

const (
	kindInt       kind = iota // an integer in [min, max]
	kindBool                  // true or false
	kindDuration              // a Go duration such as "30s", not negative
	kindPath                  // a file path: "~" expanded, a relative one resolved
	kindChoice                // one of choices, any case
	kindHost                  // a host name or IP address, without a port
	kindName                  // a model name
	kindEngine                // an engine name
	kindList                  // a list of strings; the environment gives it comma-separated
	kindKeepAlive             // a duration, "0" (unload at once) or "-1" (never unload)
	kindSize                  // a byte size: 8GiB, 512MB, a plain number of bytes, 0 for automatic
	kindSource                // where a model is pulled from: an http(s) URL or hf://OWNER/REPO/FILE[@REV]
	kindSHA256                // 64 hex digits
	kindNodeName              // a node name shown to peers, "" for the host name
	kindWord                  // one word of letters, digits and _ + . : - (a voice, a language tag)
	kindFloat                 // a number >= 0, integer or not (a rate per second)
)

// field describes one value in the schema.
type field struct {
	kind      kind
	min, max  int
	choices   []string
	boolOnOff bool // a kindChoice that also takes true/false for "on"/"off"
	emptyOK   bool // a kindPath whose "" means "the default place"
	secret    bool // a kindList whose values messages must never show (API keys)
	positive  bool // a kindDuration or kindSize that must be more than 0; a kindSize with max > 0 at most max bytes
}

var wordRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_+.:-]*$`)

var engineNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// parse checks a raw value from any layer (TOML types from the file, strings from the
// environment, typed flag values) and returns it in the type decode expects. Relative paths
// are resolved against baseDir.
func (f *field) parse(raw any, baseDir string) (any, error) {
	switch f.kind {
	case kindInt:
		return f.parseInt(raw)
	case kindBool:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string:
			if b, err := strconv.ParseBool(strings.TrimSpace(v)); err == nil {
				return b, nil
			}
		}
		return nil, fmt.Errorf("want true or false, got %s", describe(raw))
	case kindDuration:
		d, err := parseDuration(raw)
		if err == nil && f.positive && d.(time.Duration) == 0 {
			return nil, fmt.Errorf("want a duration more than 0 such as \"30s\", got %s", describe(raw))
		}
		return d, err
	case kindChoice:
		return f.parseChoice(raw)
	case kindList:
		list, err := parseList(raw)
		if err != nil && f.secret {
			return nil, errors.New("want a list of strings (the value is not shown: it is secret)")
		}
		if err == nil && f.choices != nil {
			for _, item := range list.([]string) {
				if !slices.Contains(f.choices, item) {
					return nil, fmt.Errorf("want a list of %s, got %q", strings.Join(f.choices, ", "), item)
				}
			}
		}
		return list, err
	case kindKeepAlive:
		if _, err := ParseKeepAlive(fmt.Sprint(raw)); err != nil {
			return nil, err
		}
		return fmt.Sprint(raw), nil
	case kindFloat:
		return parseFloat(raw)
	case kindSize:
		n, err := parseSize(fmt.Sprint(raw))
		if err != nil {
			return nil, err
		}
		if f.positive && (n == 0 || f.max > 0 && n > int64(f.max)) {
			return nil, f.sizeRangeError(raw)
		}
		return n, nil
	}

	s, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("want a string, got %s", describe(raw))
	}
	switch f.kind {
	case kindPath:
		if s == "" && f.emptyOK {
			return "", nil
		}
		return parsePath(s, baseDir)
	case kindHost:
		return parseHost(s)
	case kindName:
		if !store.ValidModelName(s) {
			return nil, fmt.Errorf("want a model name (letters, digits and . _ : -, up to 128), got %q", s)
		}
	case kindSource:
		if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "hf://") {
			return nil, fmt.Errorf("want an http(s):// URL or hf://OWNER/REPO/FILE[@REVISION], got %q", s)
		}
	case kindSHA256:
		s = strings.ToLower(strings.TrimPrefix(s, "sha256:"))
		if len(s) != 64 || strings.Trim(s, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("want 64 hex digits, got %q", s)
		}
	case kindNodeName:
		if s != "" && !store.ValidModelName(s) {
			return nil, fmt.Errorf("want a node name (letters, digits and . _ : -, up to 128) or \"\" for the host name, got %q", s)
		}
	case kindEngine:
		if !engineNameRE.MatchString(s) {
			return nil, fmt.Errorf("want an engine name such as \"llama_cpp\", got %q", s)
		}
	case kindWord:
		if !wordRE.MatchString(s) {
			return nil, fmt.Errorf("want one word such as \"en-us\" or \"slt\", got %q", s)
		}
	}
	return s, nil
}

func (f *field) parseInt(raw any) (any, error) {
	var n int64
	var err error
	switch v := raw.(type) {
	case int:
		n = int64(v)
	case int64:
		n = v
	case string:
		n, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	default:
		err = errors.New("not an integer")
	}
	if err != nil || n < int64(f.min) || n > int64(f.max) {
		return nil, fmt.Errorf("want an integer %s, got %s", f.intRange(), describe(raw))
	}
	return int(n), nil
}

// sizeRangeError is the error of a size out of a positive kindSize's range.
func (f *field) sizeRangeError(raw any) error {
	if f.max > 0 {
		return fmt.Errorf("want a size more than 0 and at most %d bytes, such as \"64MiB\", got %s", f.max, describe(raw))
	}
	return fmt.Errorf("want a size more than 0 such as \"32MiB\", got %s", describe(raw))
}

// intRange says which integers f accepts, for messages.
func (f *field) intRange() string {
	if f.max == math.MaxInt32 {
		return fmt.Sprintf(">= %d", f.min)
	}
	return fmt.Sprintf("%d-%d", f.min, f.max)
}

func (f *field) parseChoice(raw any) (any, error) {
	if b, ok := raw.(bool); ok && f.boolOnOff {
		if b {
			return "on", nil
		}
		return "off", nil
	}
	if s, ok := raw.(string); ok {
		s = strings.ToLower(strings.TrimSpace(s))
		for _, c := range f.choices {
			if s == c {
				return c, nil
			}
		}
		if b, err := strconv.ParseBool(s); err == nil && f.boolOnOff {
			return f.parseChoice(b)
		}
	}
	return nil, fmt.Errorf("want one of %s, got %s", strings.Join(f.choices, ", "), describe(raw))
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

// parseFloat reads a number >= 0: a TOML integer or float, or a string (the environment).
func parseFloat(raw any) (any, error) {
	var n float64
	var err error
	switch v := raw.(type) {
	case float64:
		n = v
	case int:
		n = float64(v)
	case int64:
		n = float64(v)
	case string:
		n, err = strconv.ParseFloat(strings.TrimSpace(v), 64)
	default:
		err = errors.New("not a number")
	}
	if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return nil, fmt.Errorf("want a number >= 0 such as 10 or 2.5, got %s", describe(raw))
	}
	return n, nil
}

// parseSize reads a byte size: "8GiB", "512MB", "1.5G", or a plain number of bytes.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}}
	mult := 1.0
	num := s
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			mult, num = u.mult, strings.TrimSpace(s[:len(s)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a size such as \"8GiB\" or \"512MB\" (0 = automatic), got %q", s)
	}
	return int64(n * mult), nil
}

// parseList takes a TOML array of strings, or a comma-separated string (the environment).
func parseList(raw any) (any, error) {
	switch v := raw.(type) {
	case []string:
		return v, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("want a list of strings, got an item %s", describe(item))
			}
			out = append(out, s)
		}
		return out, nil
	case string:
		out := []string{}
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list of strings, got %s", describe(raw))
}

func parseDuration(raw any) (any, error) {
	switch v := raw.(type) {
	case time.Duration:
		if v >= 0 {
			return v, nil
		}
	case string:
		if d, err := time.ParseDuration(strings.TrimSpace(v)); err == nil && d >= 0 {
			return d, nil
		}
	}
	return nil, fmt.Errorf("want a duration such as \"30s\" or \"1m30s\", got %s", describe(raw))
}

// parsePath expands a leading "~" and makes the path absolute against baseDir.
func parsePath(s, baseDir string) (any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("want a path, got \"\"")
	}
	p, err := expandHome(s)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(baseDir, p)
	}
	return filepath.Clean(p), nil
}

// expandHome replaces a leading "~" or "~/" with the user's home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") && !strings.HasPrefix(p, `~`+string(filepath.Separator)) {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot expand %q: %w", p, err)
	}
	return filepath.Join(home, p[1:]), nil
}

// parseHost accepts a host name or IP address; brackets around an IPv6 address are dropped,
// since HTTPAddr adds them back.
func parseHost(s string) (any, error) {
	h := strings.TrimSpace(s)
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if strings.ContainsAny(h, " \t/[]") || (strings.Contains(h, ":") && !validIP(h)) {
		return nil, fmt.Errorf("want a host name or IP address without a port, got %q", s)
	}
	return h, nil
}

func validIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// describe shows a raw value in a message.
func describe(raw any) string {
	switch v := raw.(type) {
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "a table"
	case []any:
		return "an array"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%v", v)
	}
}
