"""Writes tickets.jsonl: the unlabelled support tickets that generation 2 of this example has
generation 1 label (README, "Successors: two generations").

The 168 tickets below were written by hand for this example, 24 per queue, without looking at
the pack's templates or its suites (the decontaminate filter drops any that comes near a suite
case all the same). Each is used as written and in three wrapped variants — a greeting, a
sign-off, an order number — so the student sees the same request in the shapes real tickets
come in. The file has inputs only: ``meta.written_as`` is the queue the author meant, which the
run never reads (the labeller writes the labels); ``compare.py`` uses it to say how often the
teacher's label agrees with the author.

    python examples/successors/make_tickets.py     # rewrites tickets.jsonl, byte for byte
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TICKETS: dict[str, list[str]] = {
"billing": [
 "Why is there a second charge of 24.99 on my card from you dated the 3rd?",
 "My invoice lists a shipping fee even though the order was over the free shipping limit.",
 "I paid with PayPal but the money was also taken from my debit card.",
 "The VAT number on my invoice is wrong, can you issue a corrected one for my company?",
 "You billed me in dollars instead of euros and my bank added a conversion fee.",
 "I keep getting a payment failed email but my card works everywhere else.",
 "The discount from my loyalty points was not applied to the total I paid.",
 "Can I get a receipt with my business address on it for order 55812?",
 "There is a pending authorisation of 300 on my account that never went away.",
 "I was charged for express delivery but I picked standard at checkout.",
 "how do i change the card you charge every month, the old one expired",
 "Your monthly plan price went up without any notice to me, what happened?",
 "The gift card balance wasn't used and my credit card paid the whole amount.",
 "I see three identical transactions for one pair of shoes.",
 "Please split the payment for my order across two cards, the checkout won't let me.",
 "My company needs the invoices for the whole year as PDF files, where do I find them?",
 "The price at checkout was higher than the price on the product page.",
 "Hello, the installment plan charged me the full amount at once instead of in three parts.",
 "I think someone used my stored card on your site, there are charges I didn't make.",
 "Tax was added twice on my bill, once on the items and once on the total.",
 "My bank says you tried to charge me 12 times yesterday and blocked the card.",
 "The coupon FALL15 said it worked but the charge on my statement is the full price.",
 "Could you explain the 'service fee' line on my last invoice? I never agreed to that.",
 "I switched to yearly billing but I'm still being charged monthly.",
],
"refund": [
 "The jacket doesn't fit and I'd like my money returned, not a replacement.",
 "My order came with a cracked screen; please refund it to my card.",
 "I sent the blender back two weeks ago and still have not seen the refund.",
 "The headphones stopped working after a day. I want a full refund.",
 "You sent the wrong colour and I don't want to wait for an exchange, just refund me.",
 "I returned one of the two lamps, so half of the order amount should come back to me.",
 "The concert tickets were for a cancelled event. How do I get my money back?",
 "The book arrived with pages missing and I would like a refund please.",
 "I was promised a refund by your chat agent last Monday and nothing has happened.",
 "can i get my money back for the course, i only watched the first lesson",
 "The perfume smells nothing like described. Can you reimburse me?",
 "My package was damaged in transit and the vase inside is in pieces. I want my money back.",
 "I'd like to return these boots within the 30 days and be refunded.",
 "The product is a fake, not the brand you advertised. Refund me immediately.",
 "The refund I received is 20 euros less than what I paid. Where is the rest?",
 "Half the groceries in my delivery had expired, I want those refunded.",
 "Please reimburse the cost of the repair, the device was still under warranty.",
 "I ordered two and only want to keep one, so please refund the other one.",
 "The course content was not what the description said, I request a refund.",
 "Where is my refund for the returned coat? The tracking shows you received it on the 2nd.",
 "The toaster burns everything, I'm sending it back and I expect a refund.",
 "I bought the wrong size battery by mistake; is it possible to return it for my money?",
 "The seller never sent the item so I want a refund of the full order.",
 "Your app charged me for a premium feature that never unlocked; I want that money back.",
],
"account_access": [
 "I can't sign in, it says my email address is not registered but I've ordered before.",
 "The verification code never arrives on my phone so I can't get into my account.",
 "My account got locked after too many attempts, how long until I can try again?",
 "I changed my phone and now the authenticator app codes don't work.",
 "Someone changed my password and the email on my account. Help me get it back.",
 "The password reset email goes to an old address I no longer have access to.",
 "Login keeps sending me back to the start page without any error.",
 "I get 'invalid credentials' even right after resetting my password.",
 "i can't remember which email i used to make my account",
 "My account was suspended and I don't know why. I can't log in anymore.",
 "I'm stuck in a loop: it asks for two-factor, I enter the code, and it asks again.",
 "How do I log in with my username now that the social login option is gone?",
 "The link in the account activation email has expired.",
 "I'd like to unlock my account, I mistyped my password a few times.",
 "My daughter set up the account and I don't know the password; how can I reset it?",
 "After the app update it logged me out and won't accept my password.",
 "I never received the email to confirm my new account so I can't sign in.",
 "Your site says my session expired every time I try to log on.",
 "I lost my backup codes and my phone, how can I get into my account?",
 "I can't access my account since I changed my last name and email.",
 "The captcha on the login page never accepts my answer.",
 "Reset password page says 'user not found' but I get your newsletters at that email.",
 "I'm locked out of my business account and my colleague can't add me back.",
 "Please help, my login was working yesterday and now it says the account is disabled.",
],
"bug_report": [
 "The app crashes as soon as I open my order history.",
 "When I add a second item to the cart, the first one disappears.",
 "The search bar returns no results for anything I type.",
 "Your website shows a blank white page on Firefox since this morning.",
 "The size dropdown on the product page is empty.",
 "I get a 500 error when I try to save my delivery address.",
 "Pictures of the products don't load on the mobile site.",
 "The page freezes when I click 'apply coupon'.",
 "The quantity field lets me type negative numbers and then the total goes weird.",
 "Notifications in the app show orders from another customer's name.",
 "The 'track my parcel' button leads to a page that says 404.",
 "Dark mode makes all the text on the checkout page invisible.",
 "The wishlist icon doesn't do anything when I tap it.",
 "Every time I rotate my tablet the app restarts and empties my basket.",
 "The filters on the category page reset themselves after every click.",
 "Your checkout is stuck on 'processing' with a spinning wheel forever.",
 "The reviews section shows the same three reviews on every product.",
 "When I switch the language to German, half of the buttons are still in English and the menu breaks.",
 "the app says 'something went wrong' whenever I try to upload a photo for my review",
 "Prices on the website show NaN instead of a number for some items.",
 "The email preferences page won't save my changes, the boxes come back ticked.",
 "Scrolling the product list on my phone jumps back to the top every few seconds.",
 "The map on the store locator page is grey and never loads.",
 "The print invoice button opens an empty tab.",
],
"cancellation": [
 "Please cancel my subscription box before the next delivery.",
 "I want to end my premium membership at the end of this month.",
 "I placed an order an hour ago by mistake, can you cancel it before it ships?",
 "How do I stop the automatic renewal of my annual plan?",
 "Cancel order 77120 please, I found it cheaper elsewhere.",
 "I'm moving abroad and need to terminate my contract with you.",
 "Please cancel the pre-order for the new console.",
 "I no longer want the weekly meal kit, please cancel all future deliveries.",
 "Could you cancel my newspaper subscription? I don't read it anymore.",
 "I changed my mind about the sofa, it hasn't been dispatched yet, please cancel.",
 "Stop my gym membership from renewing, I'm not going anymore.",
 "i want to cancel the trial before it starts charging me",
 "Cancel the backorder for the garden chairs, I can't wait two months.",
 "Please close my account and cancel the plan attached to it.",
 "I'd like to cancel one item from my order that hasn't shipped, the red mug.",
 "Your cancellation page doesn't exist anymore, so I'm asking here: cancel my plan please.",
 "We are closing our office, please cancel the monthly coffee delivery.",
 "End my streaming subscription today, please.",
 "I want to downgrade to nothing, basically cancel the whole thing.",
 "Please cancel my repeat order for dog food.",
 "Cancel my magazine subscription effective immediately.",
 "I've ordered the same thing twice, can you cancel the second order?",
 "Please cancel my booking for the cooking class next Saturday.",
 "I don't want the extended warranty I added, please cancel that part of the order.",
],
"shipping": [
 "My parcel was supposed to arrive on Tuesday and it's now Friday.",
 "The tracking number you gave me doesn't work on the courier's website.",
 "The courier left my package at the wrong house.",
 "Can I change the delivery address? I'm not home next week.",
 "It says delivered but there's nothing at my door.",
 "My order has been stuck in 'preparing for shipment' for ten days.",
 "Do you ship to Norway, and how long would it take?",
 "The delivery driver never rang the bell and took the parcel back.",
 "Only one of my two boxes arrived, where is the other one?",
 "Can I pick up my order at a parcel locker instead of home delivery?",
 "My package has been in customs for two weeks, what do I do?",
 "I typed my street number wrong, can the courier still deliver it?",
 "when will my order ship? it's been a week",
 "The tracking hasn't updated since it left your warehouse.",
 "The delivery window you gave me was 9 to 12, it's now 5pm.",
 "I need the order before my trip on Thursday, can you send it express?",
 "My parcel is shown as returned to sender, why?",
 "Can you ship my order to my office instead of my flat?",
 "The courier says the address is incomplete; I need to add my apartment number.",
 "My neighbour got a delivery notice with my name on it but no parcel.",
 "How much does delivery to the Canary Islands cost?",
 "I've been waiting three weeks for a parcel that was supposed to take five days.",
 "The package was left in the rain outside and I wasn't informed of the delivery.",
 "Could you hold my shipment until I'm back from holiday on the 20th?",
],
"other": [
 "Just wanted to say your customer service team was brilliant last week.",
 "Is the cast iron pan suitable for induction hobs?",
 "We are a small design studio and would like to discuss a collaboration.",
 "Do you have a physical store in Lyon?",
 "What are your opening hours over the holidays?",
 "Is the wool sweater machine washable?",
 "I love the new packaging, much less plastic, well done.",
 "Are you hiring for the warehouse in Leeds?",
 "Does the kettle come with a UK plug?",
 "Can you recommend a tent for two people for winter camping?",
 "Is the black desk the same height as the white one?",
 "I'd like to suggest adding more vegan options to your range.",
 "Do you sell gift wrapping?",
 "Are your cosmetics tested on animals?",
 "Hi! Will the blue backpack be back in stock soon?",
 "I'm writing a school project about online shops, could I ask you some questions?",
 "Is there a student discount?",
 "What is the warranty period on laptops bought from you?",
 "Just a thank you for the handwritten note in my parcel, it made my day.",
 "Do you offer a bulk price for 50 notebooks for our school?",
 "Which size of the running shoes should I get if I'm normally between sizes?",
 "Do you have a newsletter I can sign up for?",
 "Is the garden hose compatible with standard tap connectors?",
 "We'd like to list your products on our marketplace; who should we talk to?",
],
}

GREETINGS = ["Hi,", "Hello there,", "Good morning,", "Hey,", "Dear support team,", "Hi team,"]
CLOSINGS = ["Thanks, Maria", "Regards, Tom", "Cheers", "Thank you in advance.", "Best, Priya", "Kind regards, J. Novak"]


def variants(text: str, rng: random.Random) -> list[str]:
    """The ticket as written and three wrapped variants (greeting, sign-off, order number)."""
    order = f"Order #{rng.randint(10000, 99999)}."
    return [text,
            f"{rng.choice(GREETINGS)} {text}",
            f"{text} {rng.choice(CLOSINGS)}",
            f"{rng.choice(GREETINGS)} {order} {text} {rng.choice(CLOSINGS)}"]


def main() -> None:
    rng = random.Random(11)
    rows = [{"input": ticket, "meta": {"written_as": queue, "variant": n}}
            for queue, texts in TICKETS.items() for text in texts
            for n, ticket in enumerate(variants(text, rng))]
    rng.shuffle(rows)
    assert len({r["input"] for r in rows}) == len(rows), "a ticket is written twice"
    out = Path(__file__).with_name("tickets.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{out}: {len(rows)} tickets ({sum(map(len, TICKETS.values()))} written by hand)")


if __name__ == "__main__":
    main()
