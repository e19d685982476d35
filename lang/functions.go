package lang

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Functions returns the functions available in static (HCL-evaluated) attributes:
// the cty standard library under the names a Terraform user expects, plus
// base64encode/base64decode, env, file and secret.
//
// dir is the directory file() resolves relative paths against; environ is in
// os.Environ() form and is what env() reads (never the process environment
// directly, so loading is deterministic and testable).
func Functions(dir string, environ []string) map[string]function.Function {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return map[string]function.Function{
		// numeric
		"abs":      stdlib.AbsoluteFunc,
		"ceil":     stdlib.CeilFunc,
		"floor":    stdlib.FloorFunc,
		"max":      stdlib.MaxFunc,
		"min":      stdlib.MinFunc,
		"pow":      stdlib.PowFunc,
		"signum":   stdlib.SignumFunc,
		"parseint": stdlib.ParseIntFunc,
		// string
		"chomp":      stdlib.ChompFunc,
		"format":     stdlib.FormatFunc,
		"formatlist": stdlib.FormatListFunc,
		"indent":     stdlib.IndentFunc,
		"join":       stdlib.JoinFunc,
		"lower":      stdlib.LowerFunc,
		"upper":      stdlib.UpperFunc,
		"regex":      stdlib.RegexFunc,
		"regexall":   stdlib.RegexAllFunc,
		"replace":    replaceFunc,
		"split":      stdlib.SplitFunc,
		"strrev":     stdlib.ReverseFunc,
		"substr":     stdlib.SubstrFunc,
		"title":      stdlib.TitleFunc,
		"trim":       stdlib.TrimFunc,
		"trimprefix": stdlib.TrimPrefixFunc,
		"trimsuffix": stdlib.TrimSuffixFunc,
		"trimspace":  stdlib.TrimSpaceFunc,
		// collections
		"chunklist":       stdlib.ChunklistFunc,
		"coalesce":        coalesceFunc,
		"coalescelist":    stdlib.CoalesceListFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"contains":        stdlib.ContainsFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"flatten":         stdlib.FlattenFunc,
		"keys":            stdlib.KeysFunc,
		"length":          lengthFunc,
		"lookup":          stdlib.LookupFunc,
		"merge":           stdlib.MergeFunc,
		"range":           stdlib.RangeFunc,
		"reverse":         stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setproduct":      stdlib.SetProductFunc,
		"setsubtract":     stdlib.SetSubtractFunc,
		"setunion":        stdlib.SetUnionFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"values":          stdlib.ValuesFunc,
		"zipmap":          stdlib.ZipmapFunc,
		// encoding
		"jsonencode":   stdlib.JSONEncodeFunc,
		"jsondecode":   stdlib.JSONDecodeFunc,
		"csvdecode":    stdlib.CSVDecodeFunc,
		"base64encode": base64EncodeFunc,
		"base64decode": base64DecodeFunc,
		// time
		"formatdate": stdlib.FormatDateFunc,
		"timeadd":    stdlib.TimeAddFunc,
		// conversion
		"tostring": stdlib.MakeToFunc(cty.String),
		"tonumber": stdlib.MakeToFunc(cty.Number),
		"tobool":   stdlib.MakeToFunc(cty.Bool),
		"tolist":   stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":    stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"toset":    stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		// ferry
		"env":    makeEnvFunc(env),
		"file":   makeFileFunc(dir),
		"secret": secretFunc,
	}
}

// lengthFunc is Terraform's length: characters of a string, or elements of a
// collection.
var lengthFunc = function.New(&function.Spec{
	Description: "Returns the number of characters of a string or elements of a collection.",
	Params: []function.Parameter{{
		Name:             "value",
		Type:             cty.DynamicPseudoType,
		AllowDynamicType: true,
		AllowUnknown:     true,
	}},
	Type: func(args []cty.Value) (cty.Type, error) {
		ty := args[0].Type()
		switch {
		case ty == cty.String, ty == cty.DynamicPseudoType,
			ty.IsListType(), ty.IsMapType(), ty.IsSetType(), ty.IsTupleType(), ty.IsObjectType():
			return cty.Number, nil
		}
		return cty.NilType, function.NewArgErrorf(0, "argument must be a string, a collection type, or a structural type")
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		if !v.IsKnown() {
			return cty.UnknownVal(cty.Number), nil
		}
		if v.Type() == cty.String {
			return stdlib.Strlen(v)
		}
		if v.Type().IsObjectType() {
			return cty.NumberIntVal(int64(len(v.Type().AttributeTypes()))), nil
		}
		return v.Length(), nil
	},
})

// coalesceFunc is Terraform's coalesce: the first argument that is neither null
// nor an empty string.
var coalesceFunc = function.New(&function.Spec{
	Description: "Returns the first argument that is not null or an empty string.",
	VarParam: &function.Parameter{
		Name:             "vals",
		Type:             cty.DynamicPseudoType,
		AllowDynamicType: true,
		AllowNull:        true,
	},
	Type: func(args []cty.Value) (cty.Type, error) {
		types := make([]cty.Type, len(args))
		for i, a := range args {
			types[i] = a.Type()
		}
		ty, _ := convert.UnifyUnsafe(types)
		if ty == cty.NilType {
			return cty.NilType, fmt.Errorf("all arguments must have the same type")
		}
		return ty, nil
	},
	Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
		for _, a := range args {
			v, err := convert.Convert(a, retType)
			if err != nil {
				return cty.UnknownVal(retType), err
			}
			if v.IsNull() || (v.Type() == cty.String && v.AsString() == "") {
				continue
			}
			return v, nil
		}
		return cty.UnknownVal(retType), fmt.Errorf("no non-null, non-empty-string arguments")
	},
})

// replaceFunc is Terraform's replace: a substring wrapped in slashes is a regular
// expression.
var replaceFunc = function.New(&function.Spec{
	Description: "Replaces each occurrence of substring (or /regex/) in str with replacement.",
	Params: []function.Parameter{
		{Name: "str", Type: cty.String},
		{Name: "substr", Type: cty.String},
		{Name: "replace", Type: cty.String},
	},
	Type: function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		str, substr, repl := args[0].AsString(), args[1].AsString(), args[2].AsString()
		if len(substr) > 1 && substr[0] == '/' && substr[len(substr)-1] == '/' {
			re, err := regexp.Compile(substr[1 : len(substr)-1])
			if err != nil {
				return cty.UnknownVal(cty.String), function.NewArgErrorf(1, "invalid regular expression: %s", err)
			}
			return cty.StringVal(re.ReplaceAllString(str, repl)), nil
		}
		return cty.StringVal(strings.ReplaceAll(str, substr, repl)), nil
	},
})

var base64EncodeFunc = function.New(&function.Spec{
	Description: "Encodes a string with standard base64.",
	Params:      []function.Parameter{{Name: "str", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(base64.StdEncoding.EncodeToString([]byte(args[0].AsString()))), nil
	},
})

var base64DecodeFunc = function.New(&function.Spec{
	Description: "Decodes a standard base64 string; the result must be valid UTF-8.",
	Params:      []function.Parameter{{Name: "str", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		b, err := base64.StdEncoding.DecodeString(args[0].AsString())
		if err != nil {
			return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "invalid base64: %s", err)
		}
		if !utf8.Valid(b) {
			return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "the decoded bytes are not valid UTF-8")
		}
		return cty.StringVal(string(b)), nil
	},
})

func makeEnvFunc(env map[string]string) function.Function {
	return function.New(&function.Spec{
		Description: "Returns an environment variable of the process running ferry, or the default when it is unset.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type: func(args []cty.Value) (cty.Type, error) {
			if len(args) > 2 {
				return cty.NilType, function.NewArgErrorf(2, "env takes a name and at most one default")
			}
			return cty.String, nil
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			if v, ok := env[name]; ok {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.UnknownVal(cty.String), function.NewArgErrorf(0,
				"environment variable %q is not set; set it, or give a default: env(%q, \"...\")", name, name)
		},
	})
}

func makeFileFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Description: "Reads a file, relative to the configuration directory, as a UTF-8 string.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			full := p
			if !filepath.IsAbs(p) {
				full = filepath.Join(dir, p)
			}
			b, err := os.ReadFile(full)
			if err != nil {
				if os.IsNotExist(err) {
					return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "no file exists at %q (paths are relative to the configuration directory)", p)
				}
				return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "cannot read %q: %s", p, err)
			}
			if !utf8.Valid(b) {
				return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "%q is not valid UTF-8", p)
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

// SecretMark marks a string produced by secret(name). The value's text is only a
// placeholder; the secret itself is resolved at run time with ResolveSecrets.
type SecretMark struct{ Name string }

func (m SecretMark) String() string { return "secret(" + m.Name + ")" }

// secretPlaceholder is the text standing in for a secret until it is resolved.
// It survives string interpolation ("user:${secret("pw")}"), so ResolveSecrets can
// substitute the secret inside a larger string.
func secretPlaceholder(name string) string { return "((secret:" + name + "))" }

var secretNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$`)

var secretFunc = function.New(&function.Spec{
	Description: "A reference to a secret, resolved at run time; never read or printed at load.",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		name := args[0].AsString()
		if !secretNameRe.MatchString(name) {
			return cty.UnknownVal(cty.String), function.NewArgErrorf(0,
				"invalid secret name %q: use letters, digits, '_', '-', '.' and '/'", name)
		}
		return cty.StringVal(secretPlaceholder(name)).Mark(SecretMark{Name: name}), nil
	},
})

// SecretNames lists, sorted and without duplicates, the secrets v refers to.
func SecretNames(v cty.Value) []string {
	_, pvm := v.UnmarkDeepWithPaths()
	seen := map[string]bool{}
	var out []string
	for _, pm := range pvm {
		for m := range pm.Marks {
			if s, ok := m.(SecretMark); ok && !seen[s.Name] {
				seen[s.Name] = true
				out = append(out, s.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// ResolveSecrets returns v with every secret(name) replaced by resolve(name),
// each name resolved once. The result carries no marks at all (it is ready to be
// handed to a connector). A secret whose placeholder was transformed by a function
// at load time (e.g. base64encode(secret("x"))) cannot be resolved and is an error.
func ResolveSecrets(v cty.Value, resolve func(name string) (string, error)) (cty.Value, error) {
	names := SecretNames(v)
	unmarked, _ := v.UnmarkDeep()
	if len(names) == 0 {
		return unmarked, nil
	}
	vals := make(map[string]string, len(names))
	for _, n := range names {
		s, err := resolve(n)
		if err != nil {
			return cty.NilVal, fmt.Errorf("resolving secret %q: %w", n, err)
		}
		vals[n] = s
	}
	found := map[string]bool{}
	out, err := cty.Transform(unmarked, func(_ cty.Path, x cty.Value) (cty.Value, error) {
		if x.Type() != cty.String || x.IsNull() || !x.IsKnown() {
			return x, nil
		}
		s := x.AsString()
		if !strings.Contains(s, "((secret:") {
			return x, nil
		}
		for _, n := range names {
			ph := secretPlaceholder(n)
			if strings.Contains(s, ph) {
				found[n] = true
				s = strings.ReplaceAll(s, ph, vals[n])
			}
		}
		return cty.StringVal(s), nil
	})
	if err != nil {
		return cty.NilVal, err
	}
	for _, n := range names {
		if !found[n] {
			return cty.NilVal, fmt.Errorf("secret %q was transformed by a function at load time and cannot be resolved; pass secret(%q) directly or inside a string template", n, n)
		}
	}
	return out, nil
}

// containsSecret reports whether v holds a secret() anywhere.
func containsSecret(v cty.Value) bool {
	return len(SecretNames(v)) > 0
}
