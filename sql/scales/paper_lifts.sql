-- The MICN paper's Table 2 lifts of test AUC, MICN − the bare backbone (the paper has no
-- width-matched control), per backbone and dataset column: Electronics (history length 10) and
-- Books (20). One row per (backbone, paper_column).
create or replace table paper_lifts as
select backbone, paper_column, lift_decimal::double as lift from (values
    ('wide_deep', 'electronics', 0.0041),
    ('wide_deep', 'books', 0.0068),
    ('din', 'electronics', 0.0037),
    ('din', 'books', 0.0032),
    ('dien', 'electronics', 0.0017),
    ('dien', 'books', 0.0099)
) as t(backbone, paper_column, lift_decimal);
