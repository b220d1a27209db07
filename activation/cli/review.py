"""`activation plan --against <build>`: the review of another build (activation.orchestration.build_review), printed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from activation.cli.common import EXIT_OK, EXIT_REFUSED
from activation.sync_project import Project


def report_review(project: Project, specs: Sequence, args) -> int:
    from activation.orchestration.build_review import review_build

    review = review_build(
        project,
        specs,
        Path(args.against),
        against_warehouse=Path(args.against_warehouse) if args.against_warehouse else None,
        base_manifest=Path(args.base_manifest) if args.base_manifest else None,
        sample=args.sample,
    )
    if args.format == "json":
        print(json.dumps(review.as_json(), indent=2, default=str, ensure_ascii=False))
    else:
        print(review.markdown())
    return EXIT_REFUSED if review.refused else EXIT_OK
