package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one ferry subcommand.
type command struct {
	name     string
	usage    string // the synopsis after "ferry "
	summary  string
	examples string
	flags    func(fs *flag.FlagSet) // declares the command's flags
	run      func(c *ctx, args []string) int

	// subs are the subcommands of a command group (ferry dlq ls); their names
	// are the full path ("dlq ls"). defaultSub runs when the first argument is
	// absent or a flag ("ferry runs --json" is "ferry runs ls --json").
	subs       []*command
	defaultSub string
}

// short is the first line of the summary, for command lists.
func (c *command) short() string {
	s, _, _ := strings.Cut(c.summary, "\n")
	return s
}

// sub returns the subcommand named word of a group, or nil.
func (c *command) sub(word string) *command {
	for _, s := range c.subs {
		if s.name == c.name+" "+word {
			return s
		}
	}
	return nil
}

// resolve picks the subcommand of a group from args; it returns the command to
// run, the remaining arguments, and an error for an unknown subcommand.
func (c *command) resolve(args []string) (*command, []string, error) {
	for len(c.subs) > 0 {
		if len(args) > 0 {
			if s := c.sub(args[0]); s != nil {
				c, args = s, args[1:]
				continue
			}
			if !strings.HasPrefix(args[0], "-") {
				var names []string
				for _, s := range c.subs {
					names = append(names, strings.TrimPrefix(s.name, c.name+" "))
				}
				return nil, nil, fmt.Errorf("unknown subcommand %q of ferry %s; it has: %s", args[0], c.name, strings.Join(names, ", "))
			}
			if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
				return c, args, nil
			}
		}
		if c.defaultSub == "" {
			return c, args, nil
		}
		c = c.sub(c.defaultSub)
	}
	return c, args, nil
}

// ctx carries the output streams and the parsed flag set of one invocation.
type ctx struct {
	stdout, stderr io.Writer
	fs             *flag.FlagSet
}

func (c *ctx) errorf(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "Error: "+format+"\n", args...)
	return 1
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run dispatches a ferry invocation and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stdout)
		return 0
	}
	if args[0] == "help" {
		if len(args) > 1 {
			if c := lookupCommand(args[1]); c != nil {
				if s, _, err := c.resolve(append(args[2:len(args):len(args)], "--help")); err == nil {
					c = s
				}
				commandHelp(stdout, c)
				return 0
			}
		}
		usage(stdout)
		return 0
	}
	if args[0] == "-version" || args[0] == "--version" {
		args[0] = "version"
	}
	cmd := lookupCommand(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "Error: unknown command %q.%s\nRun 'ferry --help' for the list of commands.\n", args[0], suggestCommand(args[0]))
		return 1
	}
	cmd, rest, err := cmd.resolve(args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\nRun 'ferry %s --help' for usage.\n", err, args[0])
		return 1
	}
	if cmd.run == nil { // a group without a default subcommand
		commandHelp(stdout, cmd)
		if len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help" || rest[0] == "-help") {
			return 0
		}
		return 1
	}
	fs := flag.NewFlagSet("ferry "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	rest, err = parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		commandHelp(stdout, cmd)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\nRun 'ferry %s --help' for usage.\n", err, cmd.name)
		return 1
	}
	return cmd.run(&ctx{stdout: stdout, stderr: stderr, fs: fs}, rest)
}

// parseInterspersed parses flags that may appear before or after positional
// arguments (ferry validate DIR --json), as users of terraform and go expect.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "ferry — declarative integration pipelines, configured in HCL.\n\nUsage: ferry <command> [flags] [args]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for _, c := range commands {
		names = append(names, c.name)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, lookupCommand(n).short())
	}
	fmt.Fprintf(w, "\nRun 'ferry <command> --help' for a command's flags and examples.\n")
}

func commandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: ferry %s\n\n%s\n", c.usage, c.summary)
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	if c.flags != nil {
		c.flags(fs)
	}
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	if len(c.subs) > 0 {
		fmt.Fprintf(w, "\nSubcommands:\n")
		for _, s := range c.subs {
			fmt.Fprintf(w, "  %-18s %s\n", s.name, s.short())
		}
		fmt.Fprintf(w, "\nRun 'ferry %s <subcommand> --help' for its flags and examples.\n", c.name)
	}
	if c.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(c.examples, "\n"))
	}
}

func suggestCommand(name string) string {
	best, bestD := "", 3
	for _, c := range commands {
		if d := editDistance(name, c.name); d < bestD {
			best, bestD = c.name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// stringList is a repeatable string flag (-var a=b -var c=d).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
