package lang

import (
	"reflect"
	"strings"
	"testing"
)

const nativeEquivalent = `
variable "dir" {
  type    = list(string)
  default = ["data"]
}
locals {
  base = "${var.dir[0]}/in"
}
connection "files" {
  type = "file"
  path = local.base
}
connection "api" {
  type  = "test"
  path  = "https://api"
  token = secret("api_token")
}
mapping "m" {
  key    = "string(id)"
  fields = {
    sku            = "variants[0].sku"
    "address.city" = "city"
    address = {
      zip = "zip"
    }
  }
  casts    = { sku = "string" }
  defaults = { currency = "EUR" }
  unset    = ["internal.id"]
}
integration "sync" {
  source {
    connection = connection.files
    path       = "*.json"
    cursor     = "updated_at"
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.api
    operation  = "update"
    path       = "\"/items/\" + sku"
  }
  retry {
    initial = "3s"
  }
}
schedule "s" {
  integration = integration.sync
  cron        = "@hourly"
}
test "t" {
  mapping = mapping.m
  input   = { id = 1 }
  expect  = { sku = "x" }
}
`

const jsonEquivalent = `{
  "variable": {"dir": {"type": "list(string)", "default": ["data"]}},
  "locals": {"base": "${var.dir[0]}/in"},
  "connection": {
    "files": {"type": "file", "path": "${local.base}"},
    "api": {"type": "test", "path": "https://api", "token": "${secret(\"api_token\")}"}
  },
  "mapping": {
    "m": {
      "key": "string(id)",
      "fields": {
        "sku": "variants[0].sku",
        "address.city": "city",
        "address": {"zip": "zip"}
      },
      "casts": {"sku": "string"},
      "defaults": {"currency": "EUR"},
      "unset": ["internal.id"]
    }
  },
  "integration": {
    "sync": {
      "source": {"connection": "connection.files", "path": "*.json", "cursor": "updated_at"},
      "transform": {"mapping": "mapping.m"},
      "target": {"connection": "connection.api", "operation": "update", "path": "\"/items/\" + sku"},
      "retry": {"initial": "3s"}
    }
  },
  "schedule": {"s": {"integration": "integration.sync", "cron": "@hourly"}},
  "test": {"t": {"mapping": "mapping.m", "input": {"id": 1}, "expect": {"sku": "x"}}}
}`

func TestJSONEquivalentToNative(t *testing.T) {
	native := mustLoad(t, map[string]string{"main.hcl": nativeEquivalent}, LoadOptions{})
	js := mustLoad(t, map[string]string{"main.hcl.json": jsonEquivalent}, LoadOptions{})

	if !native.Variables["dir"].Value.RawEquals(js.Variables["dir"].Value) {
		t.Errorf("variables differ: %#v vs %#v", native.Variables["dir"].Value, js.Variables["dir"].Value)
	}
	for _, name := range []string{"files", "api"} {
		a, b := native.Connections[name], js.Connections[name]
		if a.Type != b.Type || !a.Config.RawEquals(b.Config) {
			t.Errorf("connection %s differs: %#v vs %#v", name, a.Config, b.Config)
		}
	}
	if got := SecretNames(js.Connections["api"].Config); !reflect.DeepEqual(got, []string{"api_token"}) {
		t.Errorf("json secrets = %v", got)
	}

	fieldsOf := func(m *Mapping) []string {
		var out []string
		for _, f := range m.Fields {
			out = append(out, strings.Join(f.Path, ".")+"="+f.Expr.Source+":"+f.Cast)
		}
		return out
	}
	nm, jm := native.Mappings["m"], js.Mappings["m"]
	if !reflect.DeepEqual(fieldsOf(nm), fieldsOf(jm)) || nm.Key.Source != jm.Key.Source ||
		!reflect.DeepEqual(nm.Defaults, jm.Defaults) || !reflect.DeepEqual(nm.Unset, jm.Unset) {
		t.Errorf("mappings differ:\n%v\n%v", fieldsOf(nm), fieldsOf(jm))
	}

	ni, ji := native.Integrations["sync"], js.Integrations["sync"]
	if ni.Source.Connection != ji.Source.Connection || ni.Source.Cursor != ji.Source.Cursor || !ni.Source.Config.RawEquals(ji.Source.Config) ||
		ni.Transform.Mapping != ji.Transform.Mapping ||
		ni.Target.Connection != ji.Target.Connection || ni.Target.Operation != ji.Target.Operation ||
		ni.Target.Path.Source != ji.Target.Path.Source || *ni.Retry != *ji.Retry {
		t.Errorf("integrations differ:\n%+v\n%+v", ni, ji)
	}
	if ji.Target.Path.Source != `"/items/" + sku` || !ji.Target.Config.GetAttr("format").IsNull() {
		t.Errorf("json target = %#v", ji.Target)
	}
	ns, jsch := native.Schedules["s"], js.Schedules["s"]
	if ns.Integration != jsch.Integration || ns.Cron != jsch.Cron {
		t.Errorf("schedules differ")
	}
	if !reflect.DeepEqual(native.Tests["t"], withRange(js.Tests["t"], native.Tests["t"])) {
		t.Errorf("tests differ: %#v vs %#v", native.Tests["t"], js.Tests["t"])
	}
	if !reflect.DeepEqual(native.Dependencies, js.Dependencies) {
		t.Errorf("graphs differ:\n%v\n%v", native.Dependencies, js.Dependencies)
	}
}

func withRange(t, from *Test) *Test {
	c := *t
	c.DeclRange = from.DeclRange
	return &c
}
