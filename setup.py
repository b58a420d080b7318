"""Copies grammar/flow.lark into the package as flowdsl/grammar/flow.lark.

The grammar's source lives at the top of the repository (the product's
layout); wheels carry it as package data, found by flowdsl.parser.grammar_text.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithGrammar(build_py):
    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "flowdsl", "grammar")
        os.makedirs(target, exist_ok=True)
        shutil.copyfile(os.path.join("grammar", "flow.lark"), os.path.join(target, "flow.lark"))


setup(cmdclass={"build_py": BuildWithGrammar})
