"""`genlab datasets`: what each dataset is and where it was found."""


def add_parser(sub) -> None:
    p = sub.add_parser("datasets", help="list datasets and where each was found or would be downloaded")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data import format_datasets_table, list_datasets

    print(format_datasets_table(list_datasets(args.data_dir)))
    return 0
