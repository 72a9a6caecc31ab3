"""Schemas of the tables the Naive Bayes jobs write and read back (the data contracts)."""

from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

# dict1 as the class prior job writes it: documents per class, ids in sorted label order.
CLASS_PRIORS = StructType(
    [
        StructField("class_id", IntegerType(), False),
        StructField("label", StringType(), False),
        StructField("doc_count", LongType(), False),
    ]
)

# dict1 of a published model: the priors plus what the term counts job learned per class.
CLASSES = StructType(
    CLASS_PRIORS.fields
    + [
        StructField("term_total", LongType(), False),
        StructField("entries", LongType(), False),
        StructField("shard", IntegerType(), False),
    ]
)

VOCABULARY = StructType(
    [
        StructField("term_id", IntegerType(), False),
        StructField("term", StringType(), False),
        StructField("total_count", LongType(), False),
        StructField("doc_freq", LongType(), False),
    ]
)

# dict2, stored partitioned by shard (the directory name carries the shard).
TERM_COUNTS = StructType(
    [
        StructField("class_id", IntegerType(), False),
        StructField("term_id", IntegerType(), False),
        StructField("count", LongType(), False),
    ]
)

# The per-fold counts a model trained with selection keeps (nbknn.contract.FOLD_COUNTS_DIR):
# documents per (fold, class) and tokens per (fold, class, term), in the model's ids.
FOLD_DOCUMENTS = StructType(
    [
        StructField("fold", IntegerType(), False),
        StructField("class_id", IntegerType(), False),
        StructField("doc_count", LongType(), False),
    ]
)

FOLD_TERMS = StructType(
    [
        StructField("fold", IntegerType(), False),
        StructField("class_id", IntegerType(), False),
        StructField("term_id", IntegerType(), False),
        StructField("count", LongType(), False),
    ]
)
