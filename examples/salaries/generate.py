#!/usr/bin/env python3
"""Generates the salaries example: three companies' employee tables.

SYNTHETIC DATA: every row is drawn from a seeded pseudo-random generator.
No row describes a real person; names of companies are placeholders.

Writes, next to this script:
  acme.csv        Acme's table, CSV with a header row
  globex.csv      Globex's table, CSV with a header row
  initech.sqlite  Initech's table `salaries` in a SQLite database

Columns: employee_id, dept, salary, age, years. Departments come from one
shared list (eng, sales, ops, hr, legal); Globex alone has a legal team, of
three people, and Initech has a small marketing team outside the list, so a
joint query shows small-cell suppression and the "(other)" cell. A few Globex
salaries are missing (empty / NULL) to show SQL's NULL semantics.

Python 3 standard library only; the output is identical on every run.
Regenerate with:  python3 examples/salaries/generate.py
"""

import csv
import os
import random
import sqlite3

SEED = 20240611
HERE = os.path.dirname(os.path.abspath(__file__))

# Base salary per department, before experience and age.
BASE = {"eng": 92000, "sales": 64000, "ops": 56000, "hr": 60000, "legal": 105000, "marketing": 62000}

# Employees per department, per company.
HEADCOUNT = {
    "acme": {"eng": 58, "sales": 41, "ops": 24, "hr": 9},
    "globex": {"eng": 37, "sales": 29, "ops": 16, "hr": 7, "legal": 3},
    "initech": {"eng": 26, "sales": 14, "ops": 12, "hr": 6, "marketing": 4},
}

# Company pay level.
LEVEL = {"acme": 1.00, "globex": 1.06, "initech": 0.95}

# Globex employees whose salary is not on file (1-based, in file order).
MISSING_SALARY = {"globex": {5, 48}}


def employees(rng, company):
    rows = []
    prefix = company[0].upper()
    number = 0
    for dept, count in HEADCOUNT[company].items():
        for _ in range(count):
            number += 1
            age = rng.randint(22, 64)
            years = min(age - 21, int(rng.expovariate(1 / 7.0)))
            salary = (BASE[dept] + 2300 * years + 250 * (age - 30) + rng.gauss(0, 7500)) * LEVEL[company]
            salary = max(30000, round(salary / 100) * 100)
            if number in MISSING_SALARY.get(company, ()):
                salary = None
            rows.append((f"{prefix}{number:04d}", dept, salary, age, years))
    rng.shuffle(rows)
    return rows


def write_csv(name, rows):
    with open(os.path.join(HERE, name), "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["employee_id", "dept", "salary", "age", "years"])
        for emp, dept, salary, age, years in rows:
            out.writerow([emp, dept, "" if salary is None else salary, age, years])


def write_sqlite(name, rows):
    path = os.path.join(HERE, name)
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE salaries (employee_id TEXT PRIMARY KEY, dept TEXT NOT NULL,"
        " salary INTEGER, age INTEGER NOT NULL, years INTEGER NOT NULL)"
    )
    db.executemany("INSERT INTO salaries VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


def main():
    rng = random.Random(SEED)
    write_csv("acme.csv", employees(rng, "acme"))
    write_csv("globex.csv", employees(rng, "globex"))
    write_sqlite("initech.sqlite", employees(rng, "initech"))


if __name__ == "__main__":
    main()
