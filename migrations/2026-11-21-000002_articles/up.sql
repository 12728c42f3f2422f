CREATE TABLE articles (
  id BIGSERIAL PRIMARY KEY,
  title HSTORE,
  body TEXT NOT NULL DEFAULT ''
);
-- diesel_upsert::hstore::unique_index("articles", "title", &["en"]) and &["en", "ar"]
-- (tests/hstore.rs checks that these lines are what the helper writes)
CREATE UNIQUE INDEX "articles_title_en_key_365c86db" ON "articles" (("title" -> 'en'));
CREATE UNIQUE INDEX "articles_title_en_ar_key_e0ea6e5b" ON "articles" (("title" -> 'en'), ("title" -> 'ar'));
