/* commands.h — the birdbone subcommands. Each parses its own arguments and
 * returns a process exit code: 0 success, 1 failure (already reported), 2 usage. */
#ifndef BB_CLI_COMMANDS_H
#define BB_CLI_COMMANDS_H

int bb_cmd_compress(int argc, char **argv);
int bb_cmd_inspect(int argc, char **argv);
int bb_cmd_config(int argc, char **argv);
int bb_cmd_generate(int argc, char **argv);
int bb_cmd_scan(int argc, char **argv);
int bb_cmd_eval(int argc, char **argv);
int bb_cmd_export(int argc, char **argv);
int bb_cmd_report(int argc, char **argv);
int bb_cmd_hash(int argc, char **argv);
int bb_cmd_diff(int argc, char **argv);
int bb_cmd_revert(int argc, char **argv);

#endif
