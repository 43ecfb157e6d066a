"""Plain SQL where building the query with the ORM costs more than running it: rows read that way
are converted here as the ORM converts them (UUIDs, dates, JSON...)."""

from django.db import connection


def converters(meta, fields: list) -> list:
    """For each of `fields` (of the model `meta` describes): its column and the functions that turn
    a database value into the ORM's."""
    result = []
    for field in fields:
        col = field.get_col(meta.db_table)
        result.append((col, [*connection.ops.get_db_converters(col), *field.get_db_converters(connection)]))
    return result


def convert(rows: list, column_converters: list) -> list[list]:
    """Database rows (values in the order of `column_converters`) as the ORM's values."""
    converted = []
    for row in rows:
        values = list(row)
        for i, (col, functions) in enumerate(column_converters):
            for function in functions:
                values[i] = function(values[i], col, connection)
        converted.append(values)
    return converted
