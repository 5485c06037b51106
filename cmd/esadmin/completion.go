package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// bashCompletion asks esadmin itself for the candidates (urfave/cli's
// --generate-bash-completion), so it never falls behind the commands.
const bashCompletion = `# esadmin completion for bash: source <(esadmin completion bash)
_esadmin_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" opts
    if [[ "$cur" == -* ]]; then
        opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
    else
        opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
    fi
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _esadmin_complete esadmin
`

const zshCompletion = `# esadmin completion for zsh: source <(esadmin completion zsh)
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
` + bashCompletion

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		UsageText: "source <(esadmin completion bash)\n   source <(esadmin completion zsh)",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				_, err := fmt.Fprint(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(c.App.Writer, zshCompletion)
				return err
			}
			return usagef("completion takes bash or zsh")
		},
	}
}
