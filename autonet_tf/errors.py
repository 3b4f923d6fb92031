"""Exception types shared by the library and the command-line programs."""


class UserInputError(ValueError):
    """Bad user-facing input: a flag, file, genotype, dataset or path.

    The command-line programs print the message as one line and exit with
    code 2. The message names the input, the value received and what was
    expected.
    """


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf; the last good checkpoint was kept."""


class Preempted(RuntimeError):
    """A worker of a multi-worker run got a termination notice (SIGTERM).

    Every worker saved a checkpoint at the same step before this was raised;
    rerunning the same command on every worker resumes from it.
    """
