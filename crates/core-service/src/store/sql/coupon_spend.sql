UPDATE coupons c SET used_at = now(), payment_id = $3
FROM coupon_campaigns k
WHERE c.code = $1 AND c.user_id = $2 AND c.used_at IS NULL AND c.expires_at > now()
  AND k.id = c.campaign_id
  AND (k.concert_id IS NULL OR k.concert_id = (SELECT concert_id FROM performances WHERE id = $4))
  AND (k.performance_id IS NULL OR k.performance_id = $4)
RETURNING k.discount_kind, k.discount_amount_krw, k.discount_percent, k.max_discount_krw
