DROP INDEX "articles_title_en_ar_key_e0ea6e5b";
DROP INDEX "articles_title_en_key_365c86db";
DROP TABLE articles;
