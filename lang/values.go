package lang

import (
	"fmt"
	"math/big"

	"github.com/zclconf/go-cty/cty"
)

// ToGo converts a wholly known cty value to plain Go values: map[string]any,
// []any, string, bool, int64 (integral numbers that fit), float64, or nil.
// Marks are ignored (secret placeholders stay placeholders).
func ToGo(v cty.Value) (any, error) {
	v, _ = v.UnmarkDeep()
	return toGo(v, nil)
}

func toGo(v cty.Value, path cty.Path) (any, error) {
	if v.IsNull() {
		return nil, nil
	}
	if !v.IsKnown() {
		return nil, fmt.Errorf("value%s is not known at load time", pathString(path))
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return v.AsString(), nil
	case ty == cty.Bool:
		return v.True(), nil
	case ty == cty.Number:
		return numberToGo(v.AsBigFloat()), nil
	case ty.IsListType(), ty.IsSetType(), ty.IsTupleType():
		out := make([]any, 0, v.LengthInt())
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, ev := it.Element()
			g, err := toGo(ev, path.IndexInt(i))
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		return out, nil
	case ty.IsMapType(), ty.IsObjectType():
		out := make(map[string]any, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			g, err := toGo(ev, path.GetAttr(k.AsString()))
			if err != nil {
				return nil, err
			}
			out[k.AsString()] = g
		}
		return out, nil
	}
	return nil, fmt.Errorf("value%s of type %s cannot be used here", pathString(path), ty.FriendlyName())
}

func numberToGo(f *big.Float) any {
	if f.IsInt() {
		if i, acc := f.Int64(); acc == big.Exact {
			return i
		}
	}
	x, _ := f.Float64()
	return x
}

func pathString(p cty.Path) string {
	s := ""
	for _, step := range p {
		switch st := step.(type) {
		case cty.GetAttrStep:
			s += "." + st.Name
		case cty.IndexStep:
			if st.Key.Type() == cty.Number {
				bf := st.Key.AsBigFloat()
				i, _ := bf.Int64()
				s += fmt.Sprintf("[%d]", i)
			} else {
				s += fmt.Sprintf("[%q]", st.Key.AsString())
			}
		}
	}
	if s == "" {
		return ""
	}
	return " at " + s
}
