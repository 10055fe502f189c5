package chattemplate

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// environment is the gonja environment every template shares: gonja's
// builtins plus what transformers adds to jinja2 and what gonja gets wrong
// for chat templates. It is built once and only read afterwards. gonja's own
// builtin sets are copied, never changed, so other gonja users see no
// difference.
var environment = sync.OnceValue(func() *exec.Environment {
	filters := exec.NewFilterSet(map[string]exec.FilterFunction{}).Update(builtins.Filters)
	mustDo(filters.Replace("tojson", filterToJSON))
	mustDo(filters.Replace("items", filterItems))
	mustDo(filters.Replace("list", filterList))

	tests := exec.NewTestSet(map[string]exec.TestFunction{}).Update(builtins.Tests)
	// Jinja's "is true"/"is false" mean "is the boolean True/False";
	// gonja's treat None and strings as false.
	mustDo(tests.Replace("true", testTrue))
	mustDo(tests.Replace("false", testFalse))

	structures := exec.NewControlStructureSet(map[string]parser.ControlStructureParser{}).
		Update(builtins.ControlStructures)
	mustDo(structures.Register("generation", parseGeneration))

	globals := exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables)
	globals.Set("strftime_now", strftimeNow)
	// gonja's range feeds a channel from a goroutine that leaks when a loop
	// breaks early; a list has no goroutine.
	globals.Set("range", rangeList)

	return &exec.Environment{
		Context:           globals,
		Filters:           filters,
		Tests:             tests,
		ControlStructures: structures,
		Methods:           methods(),
	}
})

// mustDo panics on an error that can only come from a mistake in this file.
func mustDo(err error) {
	if err != nil {
		panic("chattemplate: " + err.Error())
	}
}

// methods returns gonja's builtin methods with the dict and string methods
// that return lists replaced: dict methods keep insertion order (gonja's
// sort keys) and lists index from the end with negative numbers.
func methods() exec.Methods {
	builtin := builtins.Methods
	return exec.Methods{
		Bool:  builtin.Bool,
		Int:   builtin.Int,
		Float: builtin.Float,
		List:  builtin.List,
		Dict:  dictMethods(builtin.Dict),
		Str:   strMethods(builtin.Str),
	}
}

// dictMethods keeps gonja's dict methods but answers keys, values, items
// and get from the ordered dict itself rather than from the unordered Go map
// gonja hands methods.
func dictMethods(builtin *exec.MethodSet[map[string]any]) *exec.MethodSet[map[string]any] {
	set := map[string]exec.Method[map[string]any]{}
	for _, name := range []string{"pop", "setdefault", "update", "copy", "clear"} {
		if method, ok := builtin.Get(name); ok {
			set[name] = method
		}
	}
	set["keys"] = func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
		if err := args.Take(); err != nil {
			return nil, exec.ErrInvalidCall(err)
		}
		var keys list
		for _, p := range dictPairs(self) {
			keys = append(keys, p.Key)
		}
		return keys, nil
	}
	set["values"] = func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
		if err := args.Take(); err != nil {
			return nil, exec.ErrInvalidCall(err)
		}
		var values list
		for _, p := range dictPairs(self) {
			values = append(values, p.Value)
		}
		return values, nil
	}
	set["items"] = func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
		if err := args.Take(); err != nil {
			return nil, exec.ErrInvalidCall(err)
		}
		return itemPairs(self), nil
	}
	set["get"] = func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
		if len(args.Args) < 1 || len(args.Args) > 2 || len(args.KwArgs) > 0 {
			return nil, exec.ErrInvalidCall(errors.New("get() takes 1 or 2 positional arguments"))
		}
		// Method results must be plain values: gonja takes a *exec.Value
		// result for an error, as *exec.Value has an Error method.
		for _, p := range dictPairs(self) {
			if p.Key.EqualValueTo(args.Args[0]) {
				return p.Value.Interface(), nil
			}
		}
		if len(args.Args) == 2 {
			return args.Args[1].Interface(), nil
		}
		return nil, nil
	}
	return exec.NewMethodSet(set)
}

// listReturningStrMethods are gonja's string methods whose list results
// must index from the end (content.split('</think>')[-1]).
var listReturningStrMethods = []string{"split", "rsplit", "splitlines"}

// strMethods keeps gonja's string methods, wrapping those that return lists.
func strMethods(builtin *exec.MethodSet[string]) *exec.MethodSet[string] {
	set := map[string]exec.Method[string]{}
	for _, name := range strMethodNames {
		method, ok := builtin.Get(name)
		if !ok {
			continue
		}
		set[name] = method
	}
	for _, name := range listReturningStrMethods {
		method, ok := builtin.Get(name)
		if !ok {
			continue
		}
		set[name] = func(self string, selfValue *exec.Value, args *exec.VarArgs) (any, error) {
			result, err := method(self, selfValue, args)
			if err != nil {
				return nil, err
			}
			return asList(result), nil
		}
	}
	return exec.NewMethodSet(set)
}

// strMethodNames are the string methods gonja v2.9.1 provides; its method
// sets cannot be listed, only looked up by name.
var strMethodNames = []string{
	"capitalize", "capwords", "casefold", "center", "count", "encode", "endswith",
	"expandtabs", "find", "format", "format_map", "isalnum", "isalpha", "isascii",
	"isdecimal", "isdigit", "islower", "isnumeric", "isprintable", "isspace",
	"istitle", "isupper", "join", "ljust", "lower", "lstrip", "partition",
	"removeprefix", "removesuffix", "replace", "rfind", "rjust", "rpartition",
	"rstrip", "startswith", "strip", "swapcase", "title", "upper", "zfill",
}

// filterToJSON is transformers' tojson: json.dumps(x, ensure_ascii=False,
// indent=None, separators=None, sort_keys=False), arguments in that order.
func filterToJSON(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	var opts jsonOptions
	var indent, separators *exec.Value
	if err := params.Take(
		exec.KeywordArgument("ensure_ascii", exec.AsValue(false), truthArgument(&opts.ensureASCII)),
		exec.KeywordArgument("indent", exec.AsValue(nil), valueArgument(&indent)),
		exec.KeywordArgument("separators", exec.AsValue(nil), valueArgument(&separators)),
		exec.KeywordArgument("sort_keys", exec.AsValue(false), truthArgument(&opts.sortKeys)),
	); err != nil {
		return exec.AsValue(exec.ErrInvalidCall(err))
	}
	if err := opts.setIndent(indent); err != nil {
		return exec.AsValue(exec.ErrInvalidCall(err))
	}
	if err := opts.setSeparators(separators); err != nil {
		return exec.AsValue(exec.ErrInvalidCall(err))
	}
	out, err := marshalJSON(in, opts)
	if err != nil {
		return exec.AsValue(err)
	}
	return exec.AsValue(out)
}

// truthArgument reads an argument by Python truthiness.
func truthArgument(out *bool) func(*exec.Value) error {
	return func(v *exec.Value) error {
		*out = v.IsTrue()
		return nil
	}
}

// valueArgument keeps an argument as it is.
func valueArgument(out **exec.Value) func(*exec.Value) error {
	return func(v *exec.Value) error {
		*out = v
		return nil
	}
}

// filterItems is Jinja's items filter keeping the dict's order: a list of
// [key, value] pairs that for-loops unpack.
func filterItems(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if err := params.Take(); err != nil {
		return exec.AsValue(exec.ErrInvalidCall(err))
	}
	if in.IsNil() {
		return exec.AsValue(list{})
	}
	if !in.IsDict() {
		return exec.AsValue(errors.New("items: can only get item pairs from a mapping"))
	}
	return exec.AsValue(itemPairs(in))
}

// filterList is Jinja's list filter returning a list that indexes from the
// end with negative numbers.
func filterList(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if err := params.Take(); err != nil {
		return exec.AsValue(exec.ErrInvalidCall(err))
	}
	out := list{}
	if in.IsString() {
		for _, r := range in.String() {
			out = append(out, string(r))
		}
		return exec.AsValue(out)
	}
	in.Iterate(func(_, _ int, key, _ *exec.Value) bool {
		out = append(out, key)
		return true
	}, func() {})
	return exec.AsValue(out)
}

// testTrue is Jinja's "is true": the value is the boolean True.
func testTrue(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
	return in.IsBool() && in.Bool(), nil
}

// testFalse is Jinja's "is false": the value is the boolean False.
func testFalse(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
	return in.IsBool() && !in.Bool(), nil
}

// strftimeNow is transformers' strftime_now global: the local time now,
// formatted by a C strftime format.
func strftimeNow(format string) string {
	return strftime(time.Now(), format)
}

// rangeList is Python's range(stop) / range(start, stop[, step]) as a list.
func rangeList(params *exec.VarArgs) (any, error) {
	bounds := make([]int, len(params.Args))
	for i, arg := range params.Args {
		if !arg.IsInteger() {
			return nil, exec.ErrInvalidCall(fmt.Errorf("range() argument %d is not an integer", i+1))
		}
		bounds[i] = arg.Integer()
	}
	start, stop, step := 0, 0, 1
	switch len(bounds) {
	case 1:
		stop = bounds[0]
	case 2:
		start, stop = bounds[0], bounds[1]
	case 3:
		start, stop, step = bounds[0], bounds[1], bounds[2]
	default:
		return nil, exec.ErrInvalidCall(errors.New("range() takes 1 to 3 integer arguments"))
	}
	if step == 0 {
		return nil, exec.ErrInvalidCall(errors.New("range() step must not be zero"))
	}
	const maxRange = 1 << 20 // a template has no business with more
	out := list{}
	for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
		if len(out) == maxRange {
			return nil, fmt.Errorf("range() longer than %d", maxRange)
		}
		out = append(out, i)
	}
	return out, nil
}

// generationBlock is transformers' {% generation %}...{% endgeneration %}:
// it marks what the assistant wrote, for training masks, and renders its body
// unchanged.
type generationBlock struct {
	location *tokens.Token
	body     *nodes.Wrapper
}

// Position implements nodes.Node.
func (g *generationBlock) Position() *tokens.Token { return g.location }

// String implements nodes.Node.
func (g *generationBlock) String() string {
	return fmt.Sprintf("GenerationControlStructure(Line=%d Col=%d)", g.location.Line, g.location.Col)
}

// Execute renders the body in its own scope, as jinja2's call block does.
func (g *generationBlock) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	return r.ExecuteWrapper(g.body)
}

// parseGeneration reads {% generation %} up to its {% endgeneration %}.
func parseGeneration(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	block := &generationBlock{location: p.Current()}
	if !args.End() {
		return nil, args.Error("generation takes no arguments", args.Current())
	}
	body, endArgs, err := p.WrapUntil("endgeneration")
	if err != nil {
		return nil, err
	}
	if !endArgs.End() {
		return nil, endArgs.Error("endgeneration takes no arguments", endArgs.Current())
	}
	block.body = body
	return block, nil
}
