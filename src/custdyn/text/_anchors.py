"""Short example statements per sentiment in the supported languages, written for this project.

Their mean embeddings are the class prototypes of the default engine's zero-shot component
(together with "This is positive/negative/neutral"-style prompts); they carry the languages the
training data lacks (Norwegian, Tagalog and code-switched Taglish) into the ensemble.
"""

from __future__ import annotations

ANCHORS: dict[str, dict[str, list[str]]] = {
    "en": {
        "negative": [
            "This is negative.", "Terrible service, I am very disappointed.",
            "The delivery was late again and nobody answers my emails.",
            "Worst purchase ever, it broke after two days.",
            "I want a refund, this product is awful.", "So frustrating, the app keeps crashing.",
            "Rude staff and overpriced, never again.", "I'm angry, you charged me twice.",
        ],
        "neutral": [
            "This is neutral.", "I ordered a blue jacket last Tuesday.",
            "What are your opening hours on Saturday?", "Please send me the invoice for March.",
            "The package arrived today.", "Can I change my delivery address?",
            "I have a question about my subscription.", "The meeting is moved to 3 pm.",
        ],
        "positive": [
            "This is positive.", "Great service, thank you so much!",
            "I love this product, it works perfectly.", "Fast delivery and friendly staff.",
            "Very happy with my purchase, highly recommended.", "Excellent quality, worth every penny.",
            "Thanks for the quick help, problem solved!", "Amazing experience, I will order again.",
        ],
    },
    "pt": {
        "negative": [
            "Isto é negativo.", "Péssimo atendimento, estou muito decepcionado.",
            "A entrega atrasou de novo e ninguém responde.", "O produto chegou com defeito, quero o meu dinheiro de volta.",
            "Que raiva, cobraram duas vezes.", "Horrível, nunca mais compro aqui.",
        ],
        "neutral": [
            "Isto é neutro.", "Fiz uma encomenda na terça-feira.",
            "Qual é o horário de funcionamento ao sábado?", "Podem enviar-me a fatura de março?",
            "A encomenda chegou hoje.", "Tenho uma dúvida sobre a minha assinatura.",
        ],
        "positive": [
            "Isto é positivo.", "Ótimo atendimento, muito obrigado!",
            "Adorei o produto, funciona perfeitamente.", "Entrega rápida e equipe simpática.",
            "Muito satisfeita com a compra, recomendo.", "Excelente qualidade, vale cada centavo.",
        ],
    },
    "no": {
        "negative": [
            "Dette er negativt.", "Elendig service, jeg er veldig skuffet.",
            "Pakken kom for sent igjen og ingen svarer på e-post.", "Varen var ødelagt, jeg vil ha pengene tilbake.",
            "Jeg er sint, dere har trukket meg to ganger.", "Dårlig kvalitet, aldri mer.",
        ],
        "neutral": [
            "Dette er nøytralt.", "Jeg bestilte en jakke forrige tirsdag.",
            "Hva er åpningstidene på lørdag?", "Kan dere sende meg fakturaen for mars?",
            "Pakken kom i dag.", "Jeg har et spørsmål om abonnementet mitt.",
        ],
        "positive": [
            "Dette er positivt.", "Fantastisk service, tusen takk!",
            "Jeg elsker dette produktet, det fungerer perfekt.", "Rask levering og hyggelig personale.",
            "Veldig fornøyd med kjøpet, anbefales.", "Utmerket kvalitet, verdt hver krone.",
        ],
    },
    "tl": {
        "negative": [
            "Ito ay negatibo.", "Ang pangit ng serbisyo, sobrang disappointed ako.",
            "Late na naman ang delivery at walang sumasagot.", "Sira na agad yung product, gusto ko ng refund.",
            "Nakakainis, dalawang beses akong siningil.", "Grabe ang bagal ng internet niyo, hindi na ako bibili ulit.",
        ],
        "neutral": [
            "Ito ay neutral.", "Nag-order ako ng jacket noong Martes.",
            "Anong oras kayo bukas sa Sabado?", "Pwede po bang ipadala ang invoice para sa Marso?",
            "Dumating na po yung package ngayon.", "May tanong po ako tungkol sa subscription ko.",
        ],
        "positive": [
            "Ito ay positibo.", "Ang galing ng serbisyo, maraming salamat!",
            "Gustong-gusto ko ang product, perfect talaga.", "Ang bilis ng delivery at mababait ang staff.",
            "Sobrang satisfied ako sa binili ko, highly recommended.", "Super ganda ng quality, sulit na sulit.",
        ],
    },
}  # fmt: skip
