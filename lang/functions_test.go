package lang

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// evalFn evaluates one expression with the load functions.
func evalFn(t *testing.T, dir string, environ []string, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	expr, diags := hclsyntax.ParseExpression([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parse %s: %s", src, diags)
	}
	return expr.Value(&hcl.EvalContext{Functions: Functions(dir, environ)})
}

func jsonOf(t *testing.T, v cty.Value) string {
	t.Helper()
	v, _ = v.UnmarkDeep()
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFunctions(t *testing.T) {
	dir := writeDir(t, map[string]string{"data/product.json": `{"id": 7, "tags": ["a", "b"]}`})
	env := []string{"REGION=eu", "EMPTY="}
	cases := map[string]string{
		`abs(-3)`:                                          `3`,
		`ceil(1.2)`:                                        `2`,
		`floor(1.8)`:                                       `1`,
		`max(1, 5, 3)`:                                     `5`,
		`min(4, 2)`:                                        `2`,
		`pow(2, 10)`:                                       `1024`,
		`signum(-5)`:                                       `-1`,
		`parseint("ff", 16)`:                               `255`,
		`chomp("x\n")`:                                     `"x"`,
		`format("%s-%03d", "a", 7)`:                        `"a-007"`,
		`formatlist("%s!", ["a", "b"])`:                    `["a!","b!"]`,
		`indent(2, "a\nb")`:                                `"a\n  b"`,
		`join(",", ["a", "b"])`:                            `"a,b"`,
		`lower("AB")`:                                      `"ab"`,
		`upper("ab")`:                                      `"AB"`,
		`regex("[0-9]+", "ab12")`:                          `"12"`,
		`regexall("[0-9]", "a1b2")`:                        `["1","2"]`,
		`replace("a-b-c", "-", "+")`:                       `"a+b+c"`,
		`replace("a1b22", "/[0-9]+/", "#")`:                `"a#b#"`,
		`split(",", "a,b")`:                                `["a","b"]`,
		`strrev("abc")`:                                    `"cba"`,
		`substr("hello", 1, 3)`:                            `"ell"`,
		`title("hello world")`:                             `"Hello World"`,
		`trim("xxaxx", "x")`:                               `"a"`,
		`trimprefix("foobar", "foo")`:                      `"bar"`,
		`trimsuffix("foobar", "bar")`:                      `"foo"`,
		`trimspace("  a ")`:                                `"a"`,
		`chunklist([1, 2, 3], 2)`:                          `[[1,2],[3]]`,
		`coalesce("", "b")`:                                `"b"`,
		`coalescelist([], [1])`:                            `[1]`,
		`compact(["a", "", "b"])`:                          `["a","b"]`,
		`concat([1], [2])`:                                 `[1,2]`,
		`contains(["a"], "a")`:                             `true`,
		`distinct([1, 1, 2])`:                              `[1,2]`,
		`element(["a", "b"], 3)`:                           `"b"`,
		`flatten([[1], [2, [3]]])`:                         `[1,2,3]`,
		`keys({ b = 1, a = 2 })`:                           `["a","b"]`,
		`length("héllo")`:                                  `5`,
		`length([1, 2])`:                                   `2`,
		`length({ a = 1 })`:                                `1`,
		`lookup({ a = "x" }, "b", "d")`:                    `"d"`,
		`merge({ a = 1 }, { b = 2 })`:                      `{"a":1,"b":2}`,
		`range(3)`:                                         `[0,1,2]`,
		`reverse([1, 2])`:                                  `[2,1]`,
		`setintersection(["a", "b"], ["b"])`:               `["b"]`,
		`length(setproduct(["a", "b"], ["c"]))`:            `2`,
		`setsubtract(["a", "b"], ["b"])`:                   `["a"]`,
		`setunion(["a"], ["b"])`:                           `["a","b"]`,
		`slice([1, 2, 3], 1, 2)`:                           `[2]`,
		`sort(["b", "a"])`:                                 `["a","b"]`,
		`values({ a = 1, b = 2 })`:                         `[1,2]`,
		`zipmap(["a"], [1])`:                               `{"a":1}`,
		`jsonencode({ a = [1] })`:                          `"{\"a\":[1]}"`,
		`jsondecode("{\"a\": true}")`:                      `{"a":true}`,
		`csvdecode("a,b\n1,2\n")`:                          `[{"a":"1","b":"2"}]`,
		`formatdate("YYYY-MM-DD", "2024-03-01T10:00:00Z")`: `"2024-03-01"`,
		`timeadd("2024-03-01T10:00:00Z", "1h")`:            `"2024-03-01T11:00:00Z"`,
		`tostring(1)`:                                      `"1"`,
		`tonumber("2")`:                                    `2`,
		`tobool("true")`:                                   `true`,
		`tolist(["a"])`:                                    `["a"]`,
		`tomap({ a = "b" })`:                               `{"a":"b"}`,
		`toset(["a", "a"])`:                                `["a"]`,
		`base64encode("héllo")`:                            `"aMOpbGxv"`,
		`base64decode("aMOpbGxv")`:                         `"héllo"`,
		`env("REGION")`:                                    `"eu"`,
		`env("EMPTY", "d")`:                                `""`,
		`env("NOPE", "fallback")`:                          `"fallback"`,
		`jsondecode(file("data/product.json")).id`:         `7`,
	}
	for src, want := range cases {
		v, diags := evalFn(t, dir, env, src)
		if diags.HasErrors() {
			t.Errorf("%s: %s", src, diags)
			continue
		}
		if got := jsonOf(t, v); got != want {
			t.Errorf("%s = %s, want %s", src, got, want)
		}
	}
}

func TestFunctionErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		`env("NOPE")`:              `environment variable "NOPE" is not set`,
		`env("A", "b", "c")`:       `at most one default`,
		`file("missing/x.json")`:   `no file exists at "missing/x.json"`,
		`base64decode("%%%")`:      `invalid base64`,
		`secret("bad name")`:       `invalid secret name`,
		`replace("a", "/[/", "b")`: `invalid regular expression`,
		`length(1)`:                `must be a string, a collection type`,
		`nosuchfunction(1)`:        `There is no function named "nosuchfunction"`,
		`tonumber("x")`:            `cannot convert "x" to number`,
	}
	for src, want := range cases {
		_, diags := evalFn(t, dir, nil, src)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), want) {
			t.Errorf("%s: got %v, want error containing %q", src, diags, want)
		}
	}
}

func TestEnvDoesNotReadProcessEnvironment(t *testing.T) {
	t.Setenv("FERRY_LANG_TEST_ENV", "from-process")
	_, diags := evalFn(t, t.TempDir(), nil, `env("FERRY_LANG_TEST_ENV")`)
	if !diags.HasErrors() {
		t.Fatal("env() read the process environment instead of LoadOptions.Environ")
	}
}

func TestSecrets(t *testing.T) {
	v, diags := evalFn(t, "", nil, `{
  plain   = secret("db_password")
  dsn     = "postgres://app:${secret("db_password")}@${secret("db_host")}/x"
  json    = jsonencode({ token = secret("api_token") })
  upper   = upper(secret("api_token"))
  nothing = "x"
  list    = [secret("api_token"), "y"]
}`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := SecretNames(v); !reflect.DeepEqual(got, []string{"api_token", "db_host", "db_password"}) {
		t.Errorf("SecretNames = %v", got)
	}
	plain := v.GetAttr("plain")
	if !plain.HasMark(SecretMark{Name: "db_password"}) {
		t.Errorf("plain is not marked: %#v", plain)
	}
	if got := SecretNames(v.GetAttr("nothing")); len(got) != 0 {
		t.Errorf("nothing has secrets %v", got)
	}

	calls := map[string]int{}
	resolve := func(name string) (string, error) {
		calls[name]++
		return "S3CR3T-" + name, nil
	}
	sub := cty.ObjectVal(map[string]cty.Value{
		"plain": v.GetAttr("plain"), "dsn": v.GetAttr("dsn"), "json": v.GetAttr("json"),
		"nothing": v.GetAttr("nothing"), "list": v.GetAttr("list"),
	})
	out, err := ResolveSecrets(sub, resolve)
	if err != nil {
		t.Fatal(err)
	}
	if out.ContainsMarked() {
		t.Error("resolved value still marked")
	}
	want := map[string]string{
		"plain":   "S3CR3T-db_password",
		"dsn":     "postgres://app:S3CR3T-db_password@S3CR3T-db_host/x",
		"json":    `{"token":"S3CR3T-api_token"}`,
		"nothing": "x",
	}
	for k, w := range want {
		if got := out.GetAttr(k).AsString(); got != w {
			t.Errorf("%s = %q, want %q", k, got, w)
		}
	}
	if got := out.GetAttr("list").Index(cty.NumberIntVal(0)).AsString(); got != "S3CR3T-api_token" {
		t.Errorf("list[0] = %q", got)
	}
	if calls["db_password"] != 1 || len(calls) != 3 {
		t.Errorf("resolver calls = %v (each name once)", calls)
	}

	// A secret transformed by a function cannot be substituted.
	if _, err := ResolveSecrets(v.GetAttr("upper"), resolve); err == nil || !strings.Contains(err.Error(), "transformed") {
		t.Errorf("upper(secret): err = %v", err)
	}
	// Resolver errors are wrapped with the name.
	boom := errors.New("boom")
	_, err = ResolveSecrets(v.GetAttr("plain"), func(string) (string, error) { return "", boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "db_password") {
		t.Errorf("err = %v", err)
	}
	// Values without secrets pass through unmarked.
	if got, err := ResolveSecrets(cty.StringVal("x"), nil); err != nil || got.AsString() != "x" {
		t.Errorf("no secrets: %v %v", got, err)
	}
}

// Secrets flow through locals, templates and hcldec into connection configs,
// are never resolved or printed at load, and are rejected where they would be
// stored as plain data.
func TestSecretsInConfig(t *testing.T) {
	const secretValue = "hunter2-never-seen"
	cfg, diags := load(t, map[string]string{"main.hcl": `
locals {
  token = secret("shop/token")
}
connection "shop" {
  type  = "test"
  path  = "https://${local.token}@shop"
  token = local.token
}
connection "bad" {
  type = "test"
  path = "x"
  port = secret("port")
}
`}, LoadOptions{Environ: []string{"SHOP_TOKEN=" + secretValue}})
	// port = secret() is a string where a number is required: reported, no panic.
	wantDiag(t, diags, "Incorrect attribute value type")
	shop := cfg.Connections["shop"]
	if got := SecretNames(shop.Config); !reflect.DeepEqual(got, []string{"shop/token"}) {
		t.Fatalf("SecretNames = %v", got)
	}
	var sb strings.Builder
	_ = WriteDiagnostics(&sb, cfg.Files, diags, false)
	raw, _ := shop.Config.UnmarkDeep()
	if strings.Contains(fmt.Sprintf("%#v", raw), secretValue) || strings.Contains(sb.String(), secretValue) {
		t.Fatal("secret value appeared at load")
	}
	out, err := ResolveSecrets(shop.Config, func(name string) (string, error) { return secretValue, nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := out.GetAttr("path").AsString(); got != "https://"+secretValue+"@shop" {
		t.Errorf("path = %q", got)
	}
	if got := out.GetAttr("token").AsString(); got != secretValue {
		t.Errorf("token = %q", got)
	}
}

func TestSecretsRejectedInPlainData(t *testing.T) {
	for name, src := range map[string]string{
		"cursor": `connection "c" {
  type = "test"
  path = "x"
}
integration "i" {
  source {
    connection = connection.c
    cursor     = secret("x")
  }
  target {
    connection = connection.c
  }
}`,
		"test input": `mapping "m" {
  key = "id"
}
test "t" {
  mapping = mapping.m
  input   = { a = secret("x") }
  expect  = {}
}`,
		"defaults": `mapping "m" {
  defaults = { a = "${secret("x")}-y" }
}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, diags := load(t, map[string]string{"main.hcl": src}, LoadOptions{})
			wantDiag(t, diags, "Secret not allowed here")
		})
	}
}
